"""The fine-tuning schedule chosen for a run's training photo count: its peak rate and its length."""

from __future__ import annotations

import math

# The automatic peak rate. Adam moves every weight by about the rate per step whatever its scale, and pretrained
# depthwise kernels are small: with every cached view in every epoch (4x the steps) 1e-4 hurt; with one view per
# photo per epoch it gained on groceries25. Measured with two blocks (docs/benchmarks.md, 2026-12-05), 2e-4 gained
# more on every split of groceries25 and its 32-px copy (about 3,100 training photos, 49 batches of 64 an epoch:
# +4.5 / +6.0 / +3.4 and +3.1 / +7.3 / +5.6 points over the head, against 1e-4's +3.7 / +4.9 / +2.3 and
# +2.0 / +5.5 / +2.8) but lost 32-px flowers5's gains (about 480 photos, 8 batches an epoch: the head kept on all
# three splits, against 1e-4's +0.0 / +2.9 / +1.8); flowers5 and hymenoptera lost nothing at either rate. A few
# hundred photos give few steps, and each photo is seen in every one of them: the larger rate overfits them before
# the schedule decays. In between, on parts of groceries25 (`bench_finetune --share`, splits 0 and 2), 2e-4 gained
# more at about 1,550 photos (+4.5 / +3.1 against +4.0 / +2.6; 32 px: +6.6 / +4.8 against +0.0 / +2.8) and at about
# 780 (+3.7 / +3.6 against +0.0 / +2.2; 32 px: the head kept at both rates). So the rate grows with the photo
# count: SMALL_SET_RATE up to SMALL_SET_PHOTOS (481 measured), LARGE_SET_RATE from LARGE_SET_PHOTOS (759 measured),
# evenly in log photos between, where nothing was measured (no cliff where one more photo doubles it).
SMALL_SET_RATE, LARGE_SET_RATE = 1e-4, 2e-4
SMALL_SET_PHOTOS, LARGE_SET_PHOTOS = 500, 750


def automatic_rate(train_photos: int) -> float:
    """The peak fine-tuning rate for a run on this many training photos (see SMALL_SET_RATE)."""
    if train_photos <= SMALL_SET_PHOTOS:
        return SMALL_SET_RATE
    if train_photos >= LARGE_SET_PHOTOS:
        return LARGE_SET_RATE
    share = math.log(train_photos / SMALL_SET_PHOTOS) / math.log(LARGE_SET_PHOTOS / SMALL_SET_PHOTOS)
    return SMALL_SET_RATE * (LARGE_SET_RATE / SMALL_SET_RATE) ** share


# The automatic schedule length, measured side by side with `bench_finetune --epochs 8,16` (two blocks, three splits
# each, docs/benchmarks.md, 2026-12-06): with about 3,100 training photos 16 epochs beat 8 on every split of
# groceries25 (+5.2 / +6.3 / +4.8 points over the head against +4.5 / +6.0 / +3.4) and of its 32-px copy (+6.0 / +9.4
# / +8.2 against +3.1 / +7.3 / +5.6), the whole run still under 3 minutes once the activations are cached. With a
# few hundred (flowers5, hymenoptera and their 32-px copies, 240-490) 16 gained nothing overall: one or two photos
# either way, and 32-px hymenoptera's split 2 lost +1.9 (a long schedule's rate stays high while its few steps
# learn the photos by heart, as with the larger rate). So the longer schedule starts where the larger rate does.
SMALL_SET_EPOCHS, LARGE_SET_EPOCHS = 8, 16


def automatic_epochs(train_photos: int) -> int:
    """The most fine-tuning epochs for a run on this many training photos (see SMALL_SET_EPOCHS)."""
    return LARGE_SET_EPOCHS if train_photos >= LARGE_SET_PHOTOS else SMALL_SET_EPOCHS
