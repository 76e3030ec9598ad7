"""Which offline backbone and fine-tuning depth to pick: expected time on this machine, and measured gain.

Time comes from the backbone's measured speed here (core.speed) and, for fine-tuning, from how many
forward passes' worth of work a whole fine-tuning stage took in the measurements below; gain is
what those measurements found, in validation-accuracy points over the Lite0 head alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.backbones import DEFAULT_BACKBONE, REGISTRY, get_backbone
from core.joined import OFFERED

DEPTHS = range(5)   # blocks unfrozen: 0 (head only) to 4
VIEWS = 2           # every photo is embedded as is and mirrored
# One pass over the photos (decode, resize, every view through the network) took this many forward passes' worth of
# time per view in the measurements below (2 to 3 on a quiet machine, 7 under heavy load): reading and resizing
# JPEGs costs about as much as the network itself.
PASS_FACTOR = 2.5

# Measured with `python -m bench.bench_finetune` on 2026-11-25, the way a project trains: each set's train/ folder with
# the project's own 20 % validation split (flowers5: 323 train / 77 val; hymenoptera: 191 / 53), then scored once on
# its val/ folder (200 and 153 photos never seen), default settings, on the 2-core development machine (load 2-8 from
# other work). (backbone, blocks) -> (held-out accuracy points over the Lite0 head, mean of the two sets; the
# fine-tuning stage's seconds / (2 x training photos x one forward pass), from the quieter run of the day before).
# Lite0 head: flowers5 0.885, hymenoptera 0.935. flowers5: one block 0.880, two 0.880, three 0.875, four kept the head;
# hymenoptera: one block 0.935, two to four kept the head. On these ImageNet-like photos the frozen features already
# give what a few hundred photos can; fine-tuning paid on photos unlike ImageNet's (grocery shelves: +4 to +6 points
# in the prototype described in issue 13).
MEASURED: dict[tuple[str, int], tuple[float, float]] = {
    ("efficientnet_lite0", 0): (0.0, 0.0),
    ("efficientnet_lite0", 1): (-0.3, 2.9),
    ("efficientnet_lite0", 2): (-0.3, 4.3),
    ("efficientnet_lite0", 3): (-0.5, 5.9),
    ("efficientnet_lite0", 4): (0.0, 7.2),
    # Heads alone, trained on all of train/ and scored on val/ (the day before): Lite1 0.860 on flowers5 (-5.5) and
    # 0.954 on hymenoptera (+2.6); Lite2 0.875 (-4.0) and 0.961 (+3.3).
    ("efficientnet_lite1", 0): (-1.5, 0.0),
    ("efficientnet_lite2", 0): (-0.3, 0.0),
}
# Forward milliseconds per photo (LiteRT, batches of 8) measured beside those figures, for backbones not yet
# timed on this machine.
REFERENCE_MS = {"efficientnet_lite0": 5.9, "efficientnet_lite1": 11.4, "efficientnet_lite2": 15.2}
# Test-time mirroring (a photo averaged with its mirror image): +1.0 point on flowers5's and +0.7 on hymenoptera's
# validation photos (Lite0 head), but from -2.0 to +1.5 (mean +0.2) on held-out photos of three other flowers5
# splits: not worth doubling the prediction time.
MIRROR_TTA_HELPS = False


@dataclass(frozen=True)
class Advice:
    backbone: str
    blocks: int
    seconds: float              # expected wall time of a first run (nothing cached) for the photo count
    gain: float | None          # measured accuracy points over the Lite0 head; None: not measured
    timed_here: bool            # the backbone's speed was measured on this machine (else the reference figure)


def advice(photos: int, speeds: dict[str, dict]) -> list[Advice]:
    """One row per offline backbone and depth 0..4 for a project of `photos` photos; `speeds` as core.speed keeps them."""
    rows = []
    for name, spec in REGISTRY.items():
        if not spec.offline:
            continue
        timed = name in speeds
        forward_s = (speeds[name]["ms_per_photo"] if timed else REFERENCE_MS[name]) / 1000
        for blocks in DEPTHS:
            gain, finetune_factor = MEASURED.get((name, blocks), (None, _nearest_factor(blocks)))
            passes = 1 if blocks == 0 else 2   # fine-tuning adds a pass for the boundary activations
            seconds = photos * VIEWS * forward_s * (PASS_FACTOR * passes + finetune_factor)
            rows.append(Advice(name, blocks, seconds, gain, timed))
    return rows


def _nearest_factor(blocks: int) -> float:
    """A depth's fine-tuning cost measured on any backbone (relative to its own speed, so it carries over)."""
    factors = [factor for (_, b), (_, factor) in MEASURED.items() if b == blocks]
    return max(factors) if factors else 0.0


# The default and the joined choices (core.joined), head only. Gains: validation accuracy points over Lite0 alone on
# each shared set, the mean of three splits (`python -m bench.bench_joined`, 2026-12-04, with the head of that day).
# Try it: milliseconds per decoded photo through the run's predictor, the choices interleaved (bench_joined speed,
# load average 16). Live: bench_live's Lite0 rate (15 pictures a second, see the README) times each choice's rate
# relative to Lite0 through the server's live path, measured side by side in that same run (1.00, 0.33, 0.16): the
# browser's share of the work is the same for every choice, so this errs on the slow side.
MEASURED_SETS = (("5 kinds of flowers", 5), ("ants vs bees", 2), ("25 kinds of groceries", 25))  # (set, classes)
CHOICES_MEASURED: dict[str, tuple[tuple[float, ...], float, float]] = {
    DEFAULT_BACKBONE: ((0.0, 0.0, 0.0), 12.7, 15.0),
    "efficientnet_lite0+efficientnet_lite2": ((0.3, 1.2, 4.2), 49.1, 5.0),
    "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2": ((0.6, 0.8, 6.0), 79.0, 2.4),
}
BYTES_PER_PARAMETER = 4  # float32 weights: the LiteRT files and model.tflite are about this big


@dataclass(frozen=True)
class Cost:
    """What a choice of network costs next to what it gains, for a project of some photo count."""

    backbone: str
    gains: tuple[float, ...] | None  # accuracy points over Lite0 alone per MEASURED_SETS; None: not measured
    prepare_seconds: float      # preparing every photo here (as is and mirrored), nothing cached yet
    try_ms: float | None        # Try it, one photo (measured on the development machine)
    live_fps: float | None      # live webcam pictures a second (measured on the development machine)
    size_mb: float              # the model's float32 files
    timed_here: bool            # preparation time from this machine's measured speeds (else the reference figures)


def costs(photos: int, speeds: dict[str, dict]) -> list[Cost]:
    """The default and every joined choice: preparation time for `photos` photos here, Try it, live rate, size."""
    rows = []
    for name in (DEFAULT_BACKBONE, *OFFERED):
        members = get_backbone(name).members
        timed = all(m.name in speeds for m in members)
        forward_s = sum((speeds[m.name]["ms_per_photo"] if timed else REFERENCE_MS[m.name]) / 1000 for m in members)
        gains, try_ms, fps = CHOICES_MEASURED.get(name, (None, None, None))
        rows.append(Cost(name, gains, photos * VIEWS * forward_s * PASS_FACTOR, try_ms, fps,
                         sum(m.params for m in members) * BYTES_PER_PARAMETER / 1e6, timed))
    return rows


def most_alike(classes: int) -> int:
    """Index in MEASURED_SETS of the set whose class count is nearest a project's (by ratio)."""
    return min(range(len(MEASURED_SETS)), key=lambda i: abs(math.log(max(classes, 1) / MEASURED_SETS[i][1])))
