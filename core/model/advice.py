"""Which offline backbone and fine-tuning depth to pick: expected time on this machine and measured gain, on
everyday photos and on photos unlike them; and whether a project's photos look unlike everyday ones.

Time comes from the backbone's measured speed here (core.model.speed) and, for fine-tuning, from how many
forward passes' worth of work a whole fine-tuning stage took in the measurements below; gain is
what those measurements found, in validation-accuracy points over the Lite0 head alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.model.backbones import DEFAULT_BACKBONE, REGISTRY, get_backbone
from core.model.joined import OFFERED
from core.model.novelty import most_reference_rows
from core.model.schedule import SMALL_SET_EPOCHS, automatic_epochs

DEPTHS = range(5)   # blocks unfrozen: 0 (head only) to 4
VIEWS = 2           # every photo is embedded as is and mirrored
BOUNDARY_VIEWS = 4  # fine-tuning caches the boundary activations of four views: as is, mirrored, zoomed in, both
# One pass over the photos (decode, resize, every view through the network) took this many forward passes' worth of
# time per view in the measurements below (2 to 3 on a quiet machine, 7 under heavy load): reading and resizing
# JPEGs costs about as much as the network itself.
PASS_FACTOR = 2.5


@dataclass(frozen=True)
class Measured:
    everyday: float | None  # accuracy points over the Lite0 head on everyday photos (flowers5, hymenoptera)
    unlike: float | None    # on photos unlike them (groceries25 shelf photos, 32-px copies of a shared set)
    factor: float           # the fine-tuning stage's seconds / (2 x training photos x one forward pass)


# Measured with `python -m bench.bench_finetune` (figures: docs/benchmarks.md) on 2026-12-04, 2-core machine under load:
# validation accuracy (plain probabilities), the fine-tuned model or the head as the keep rule chose, minus the Lite0
# head's on the same split. Two blocks, the stop rule measured against the run's own best (20:00-21:00 UTC, load
# 2-10): everyday photos, hymenoptera and flowers5 on three splits each: +0.0 every time (the head kept, or a tuned
# model with the same photos right); photos unlike them: groceries25 +3.7 on split 0 (0.771 -> 0.808; earlier, with
# the head of that day: +4.2 and +2.9 on splits 1 and 2), its 32-px copy +2.0, +5.5, +2.9 (0.621 -> 0.641,
# 0.601 -> 0.656, 0.620 -> 0.649), flowers5's 32-px copy +0.0, +0.0, +1.8 (96 photos per class overfit two blocks
# within two epochs): +2.6 on average over the three sets. As the model answers (mirror-averaged) the 32-px
# groceries25 gains are +4.1, +6.1, +5.7. hymenoptera's 32-px copy (+0.0, +0.0, +1.9) is not counted: its head
# shows no sign of photos unlike everyday ones (head cv 0.86-0.87). Factor: 2.2-2.3 for all eight epochs on
# groceries25 and its 32-px copy on a quiet machine (81-85 s of fine-tuning for about 3,150 photos, load 1.5);
# 2.1-2.5 under load 4-5; 0.4-5.0 on the small sets, which often stop after four epochs. Three blocks, split 0 only
# (20:05-21:00 UTC, load 4-10): everyday +0.0 on both sets (flowers5 kept a tuned model with the same photos right,
# hymenoptera the head); unlike: groceries25 +4.7 (0.771 -> 0.818), its 32-px copy +3.1 (0.621 -> 0.652), flowers5's
# 32-px copy +0.0 (head kept). Splits 1 and 2 (21:38-21:53 UTC, load 0.1-1.7): groceries25 +4.7, +2.5 (0.753 ->
# 0.800, 0.795 -> 0.820), its 32-px copy +6.6, +4.7 (0.601 -> 0.667, 0.620 -> 0.667), flowers5's 32-px copy +0.0,
# +0.0 (head kept): +2.9 on average over the three splits of the three sets, against two blocks' +2.6 (+2.9 since
# the rule below), so three blocks are not called clearly better. Factor: 4.3-4.8 on a quiet machine (groceries25:
# 137-145 s of epochs for about 3,100 photos, load 0.7-1.7), about twice two blocks'. Depths not measured with this
# recipe have no gain shown and their factor scaled by depth. Since 2026-12-05 (10:58-11:52 UTC, load 0.5-5) fine-tuning
# keeps the better of the re-solved head and the layer trained with the blocks (core.model.train.best_layer); two blocks
# with it: groceries25 and its 32-px copy unchanged (the re-solved head kept on every split), flowers5's 32-px copy
# +0.0, +2.9, +1.8 (split 1: the trained layer where the head was kept; split 2: +2.8 as the model answers, from +0.9),
# so +2.9 on average over the three sets (3.7, 4.9, 2.3; 2.0, 5.5, 2.8; 0.0, 2.9, 1.8); the everyday sets still +0.0.
# Since 2026-12-05 the peak rate is chosen for the training photo count (core.model.train.automatic_rate): 2e-4 on
# groceries25 and its 32-px copy (about 3,140 photos), 1e-4 on 32-px flowers5 (480) and the everyday sets. Two blocks
# with it: +4.5, +6.0, +3.4; +3.1, +7.3, +5.6; +0.0, +2.9, +1.8, so +3.8 on average (measured at each rate on 10:49-
# 12:00 UTC, rerun through the automatic rate: docs/benchmarks.md); the everyday sets +0.0 at either rate; the epochs
# cost the same at either rate, so the factor stays. Three blocks' figures are from before the better-layer rule and
# at 1e-4 only (groceries25 split 2 with the rule: +2.5 unchanged); at the automatic rate only on that split: +3.0,
# against two blocks' +3.4 there (17:50 UTC), too little to replace the mean.
# Since 2026-12-06 fine-tuning runs at most 16 epochs, not 8, from LARGE_SET_PHOTOS training photos
# (core.model.schedule.automatic_epochs; `bench_finetune --epochs 8,16`, 00:40-01:05 UTC, load 0.9-2.2, both side by
# side on each split). Two blocks at 16: groceries25 +5.2, +6.3, +4.8 (at 8 in the same run: +4.5, +6.0, +3.4), its
# 32-px copy +6.0, +9.4, +8.2 (+3.1, +7.3, +5.6); flowers5's 32-px copy keeps 8 epochs (+0.0, +2.9, +1.8), so +5.0 on
# average against +3.8. The everyday sets keep 8 epochs too: +0.0. The factors stay those of 8 epochs; the 16-epoch
# stage cost LONG_SCHEDULE_COST times as much (1.5-2.2×, 1.76 on average over the six splits: early stopping ends
# some runs at 13-14).
# One and three blocks with today's recipe (automatic rate and schedule, the better layer, refit), 2026-12-06
# 20:18-21:50 UTC, load 0.7-4.5 (`bench_finetune --depths 0,1,2,3` on the small sets, `--depths 0,1,3` on groceries25
# and its 32-px copy, three splits each): one block: groceries25 +3.6, +5.1, +4.1, its 32-px copy +2.9, +6.5, +4.1,
# flowers5's 32-px copy +0.0, +1.5, +0.0: +3.1 on average; three blocks: +6.0, +6.2, +4.3; +6.5, +11.9, +10.4; +0.0,
# +1.5, +0.9: +5.3, not clearly more than two blocks' +5.0 (more on tiny photos, +9.6 against +7.9, less on 32-px
# flowers5). Everyday photos +0.0 at every depth. Factors, per epoch run against two blocks' on the same machine: one
# block about half of two blocks' (1.1-1.5 per 8 epochs), three blocks' 4.3-6.4 under load, so the quiet 4.5 stays.
MEASURED: dict[tuple[str, int], Measured] = {
    ("efficientnet_lite0", 0): Measured(0.0, 0.0, 0.0),
    ("efficientnet_lite0", 1): Measured(0.0, 3.1, 1.2),
    ("efficientnet_lite0", 2): Measured(0.0, 5.0, 2.3),
    ("efficientnet_lite0", 3): Measured(0.0, 5.3, 4.5),
    # Heads alone, each network's own head as the app solves it, mirror-averaged, over 15 splits of every photo of a
    # set (20 for groceries25; `python -m bench.bench_joined methods --method-splits 15`, 2026-12-04, docs/
    # benchmarks.md, the single networks' "raw head" figures): Lite0 / Lite1 / Lite2 0.888 / 0.902 / 0.877 on
    # flowers5, 0.959 / 0.966 / 0.976 on hymenoptera, 0.781 / 0.782 / 0.791 on groceries25 (the one set unlike
    # everyday photos measured). It replaces a single split of 2026-11-24 (train/ -> val/: Lite1 -5.5 and +2.6,
    # Lite2 -4.0 and +3.3 on flowers5 and hymenoptera), where a photo or two moved the figures by points.
    ("efficientnet_lite1", 0): Measured(1.05, 0.1, 0.0),   # (+1.4 + 0.7) / 2; groceries25 +0.1
    ("efficientnet_lite2", 0): Measured(0.3, 1.0, 0.0),    # (-1.1 + 1.7) / 2; groceries25 +1.0
}
# The sign that photos are unlike everyday ones: the head alone, cross-validated on the training photos, names
# few of them right although there are plenty per class. Measured (head cv accuracy, three splits, the bench's
# "head cv"): everyday flowers5 0.88-0.89 and hymenoptera 0.95, where fine-tuning did not pay; groceries25 0.75 and
# its 32-px copy 0.58, where it did, and flowers5's 32-px copy 0.79 (under 100 photos per class: the head kept).
# The embeddings' own statistics (norm, sparsity, spread within classes) did not tell these sets apart. A set with many look-alike everyday classes may fall below the bar too: the page
# says "likely", and the keep rule still guards the run.
UNLIKE_BELOW = 0.85
UNLIKE_MIN_PER_CLASS = 50
# Forward milliseconds per photo (LiteRT, batches of 8) measured beside those figures, for backbones not yet
# timed on this machine.
REFERENCE_MS = {"efficientnet_lite0": 5.9, "efficientnet_lite1": 11.4, "efficientnet_lite2": 15.2}
# Test-time mirroring (each photo's probabilities averaged with its mirror image's), measured with
# `python -m bench.bench_head` on 2026-12-04 (Lite0 head on the whole embedding, three validation splits per set):
# groceries25 +0.5 points (log loss -0.017), flowers5 +0.9 (-0.014), hymenoptera -0.7 (+0.002: one photo in 50);
# on the never-seen val/ folders flowers5 +0.3 and hymenoptera +0.7. It helps on average, so every model answers
# that way (the backbone runs twice per photo); on unseen grocery photos it was worth 1.5 points (issue 17).
MIRROR_TTA_HELPS = True


# A deeper depth is suggested only when it gains clearly more on photos unlike everyday ones: by at least this many
# points on average. Between splits of one set the gain of one depth moves by 1-3 points (groceries25, two blocks:
# +3.7, +4.9, +2.3), so less is not a measured difference.
CLEARLY_BETTER = 1.0
LONG_SCHEDULE_COST = 1.76  # 16 epochs' fine-tuning stage against 8 epochs' (see MEASURED)
# A kept fine-tuned model is then trained again on every photo for its best epoch count (core.model.train.TrainConfig
# .refit): that stage took 0.64-1.02 times the fine-tuning stage's time, 0.85 on average (two blocks, groceries25 and
# its 32-px copy, three splits each, `bench_refit --blocks 2`, 2026-12-06, docs/benchmarks.md). An estimate counts it:
# the keep rule kept the tuned model on every one of those splits.
REFIT_COST = 0.85


@dataclass(frozen=True)
class Advice:
    backbone: str
    blocks: int
    seconds: float              # expected wall time of a first run (nothing cached) for the photo count
    gain: float | None          # measured accuracy points over the Lite0 head on everyday photos; None: not measured
    gain_unlike: float | None   # the same on photos unlike everyday ones
    timed_here: bool            # the backbone's speed was measured on this machine (else the reference figure)


def advice(photos: int, speeds: dict[str, dict]) -> list[Advice]:
    """One row per offline backbone and depth 0..4 for a project of `photos` photos; `speeds` as core.model.speed keeps them."""
    rows = []
    for name, spec in REGISTRY.items():
        if not spec.offline:
            continue
        timed = name in speeds
        forward_s = (speeds[name]["ms_per_photo"] if timed else REFERENCE_MS[name]) / 1000
        for blocks in DEPTHS:
            measured = MEASURED.get((name, blocks), Measured(None, None, _nearest_factor(blocks)))
            views = VIEWS + (BOUNDARY_VIEWS if blocks else 0)  # fine-tuning adds a pass for the boundary activations
            tuning = VIEWS * measured.factor * schedule_cost(photos) * (1 + REFIT_COST if blocks else 1)
            seconds = photos * forward_s * (views * PASS_FACTOR + tuning)
            rows.append(Advice(name, blocks, seconds, measured.everyday, measured.unlike, timed))
    return rows


def suggested_depth(rows: list[Advice], backbone: str = DEFAULT_BACKBONE) -> tuple[Advice, Advice | None] | None:
    """The depth to suggest for photos unlike everyday ones and the deepest measured one beside it (None when that is
    the suggestion): the shallowest fine-tuning depth whose measured gain there is within CLEARLY_BETTER points of the
    best, since each block deeper costs more time. None when no fine-tuning depth of `backbone` was measured."""
    tuned = sorted((r for r in rows if r.backbone == backbone and r.blocks and r.gain_unlike is not None),
                   key=lambda r: r.blocks)
    if not tuned:
        return None
    best = max(r.gain_unlike for r in tuned)
    chosen = next(r for r in tuned if r.gain_unlike >= best - CLEARLY_BETTER)
    return chosen, (tuned[-1] if tuned[-1] is not chosen else None)


def schedule_cost(photos: int) -> float:
    """The automatic fine-tuning schedule's cost for a project of `photos` photos, relative to the 8 epochs the
    factors were measured with."""
    return LONG_SCHEDULE_COST if automatic_epochs(round(TRAIN_SHARE * photos)) > SMALL_SET_EPOCHS else 1.0


def _nearest_factor(blocks: int) -> float:
    """A depth's fine-tuning cost measured on any backbone (relative to its own speed, so it carries over)."""
    factors = [m.factor for (_, b), m in MEASURED.items() if b == blocks]
    if factors:
        return max(factors)
    deepest = max((b for _, b in MEASURED), default=0)
    return max(m.factor for (_, b), m in MEASURED.items() if b == deepest) * blocks / max(1, deepest)


def unlike_everyday(summary: dict) -> str | None:
    """Why a run's photos look unlike everyday photos (a clause for the Train page), from its metrics; None when
    its head shows no such sign or there were too few photos to tell."""
    cv, classes = summary.get("head_cv_accuracy"), len(summary.get("classes") or [])
    per_class = (summary.get("train_images") or 0) / max(1, classes)
    if cv is None or per_class < UNLIKE_MIN_PER_CLASS or cv >= UNLIKE_BELOW:
        return None
    return (f"the network's features alone name only {round(100 * cv)}% of your training photos right when each is "
            f"held out, with about {round(per_class)} photos per class")


# The default and the joined choices (core.model.joined), head only: every figure the Train page's costs table shows,
# in one place. Try it: milliseconds per decoded photo through the run's predictor; live: pictures a second on the
# page (see CHOICES_MEASURED's comment for where each comes from).
MEASURED_SETS = (("5 kinds of flowers", 5), ("ants vs bees", 2), ("25 kinds of groceries", 25))  # (set, classes)
UNLIKE_SET = 2  # the index in MEASURED_SETS of the set of photos unlike everyday ones (grocery shelves)
# Gains: validation accuracy points over Lite0 alone as the model answers (test-time mirroring), per MEASURED_SETS,
# at a few counts of training photos a class (the training part of each split cut to that many of each class, the
# last count all of them), each choice with the head the app solves for it, paired over the same splits.
# GENERATED by `TRANSFERLAB_CACHE=/work/cache python -m bench.bench_joined photos --photo-splits 8` (its
# GAINS_BY_PHOTOS block, pasted), 2026-12-05 01:04-01:13 UTC, 8 splits
# (the five hash splits, then seeded random ones), load 1.3-2.2, today's fitted in-graph shrink (cache ...from260fitv4).
GAINS_BY_PHOTOS: dict[str, tuple[tuple[tuple[int, float], ...], ...]] = {
    'efficientnet_lite0+efficientnet_lite1+efficientnet_lite2': (
        ((10, 2.3), (25, 2.3), (50, 0.8), (96, 1.3)),  # flowers5
        ((10, 2.5), (25, 2.7), (50, 1.2), (156, 1.1)),  # hymenoptera
        ((10, 5.0), (25, 5.2), (50, 5.8), (125, 6.9)),  # groceries25
    ),
    'efficientnet_lite0+efficientnet_lite2': (
        ((10, 1.8), (25, 1.8), (50, 0.3), (96, 0.2)),  # flowers5
        ((10, 3.0), (25, 2.8), (50, 1.1), (156, 1.1)),  # hymenoptera
        ((10, 4.6), (25, 3.7), (50, 4.4), (125, 5.1)),  # groceries25
    ),
}
# (Try it ms, live pictures a second), 2026-12-05 on the code of that day (docs/benchmarks.md). Try it: milliseconds per
# decoded photo through the run's predictor, the choices interleaved (`python -m bench.bench_joined speed --rounds 5`,
# load 4.0). Live: bench_live's Lite0 rate on a quiet machine (17 pictures a second, 2026-12-04, load 1-2) times each
# choice's rate relative to Lite0 through the server's live path in that same speed run (1.00, 0.18, 0.29). The
# browser's share of the work is the same for every choice, so this errs on the slow side: bench_live measured Lite0 +
# Lite1 + Lite2 at 6 where Lite0 showed 17 (quiet, 2026-12-04), and at 2 where Lite0 showed 7 (load 4-5, 2026-12-05).
CHOICES_MEASURED: dict[str, tuple[float, float]] = {
    DEFAULT_BACKBONE: (22.1, 17.0),
    "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2": (154.0, 3.1),
    "efficientnet_lite0+efficientnet_lite2": (115.5, 4.9),
}
TRAIN_SHARE = 0.8  # of a project's photos, the part its head trains on at the default validation share
BYTES_PER_PARAMETER = 4  # float32 weights: the LiteRT files and model.tflite are about this big


@dataclass(frozen=True)
class Cost:
    """What a choice of network costs next to what it gains, for a project of some photo count."""

    backbone: str
    gains: tuple[float, ...] | None  # accuracy points over Lite0 alone per MEASURED_SETS; None: not measured
    gain_photos: tuple[int, ...] | None  # per MEASURED_SETS, the training photos a class each gain was measured at
    prepare_seconds: float      # preparing every photo here (as is and mirrored), nothing cached yet
    try_ms: float | None        # Try it, one photo (measured on the development machine)
    live_fps: float | None      # live webcam pictures a second (measured on the development machine)
    size_mb: float              # the model's float32 files
    download_mb: float          # the most a download (model.tflite, model.keras) weighs: the networks and the novelty
                                # check's reference photos, float32 in the graph (as many as a large project keeps)
    timed_here: bool            # preparation time from this machine's measured speeds (else the reference figures)


def with_joined_speeds(speeds: dict[str, dict]) -> dict[str, dict]:
    """The measured speeds plus each joined choice whose members are all timed: its members' times together (every
    member looks at each photo)."""
    speeds = dict(speeds)
    for name in OFFERED:
        members = get_backbone(name).members
        if all(m.name in speeds for m in members):
            speeds[name] = {"ms_per_photo": sum(speeds[m.name]["ms_per_photo"] for m in members)}
    return speeds


def costs(photos: int, speeds: dict[str, dict], classes: int = 0) -> list[Cost]:
    """The default and every joined choice: preparation time for `photos` photos here, Try it, live rate, size, and
    the gains measured at the training photos a class nearest a project of `photos` photos in `classes` classes
    (0: not known, the gains on all of each set's photos)."""
    per_class = TRAIN_SHARE * photos / classes if classes else math.inf
    rows = []
    for name in (DEFAULT_BACKBONE, *OFFERED):
        members = get_backbone(name).members
        timed = all(m.name in speeds for m in members)
        forward_s = sum((speeds[m.name]["ms_per_photo"] if timed else REFERENCE_MS[m.name]) / 1000 for m in members)
        try_ms, fps = CHOICES_MEASURED.get(name, (None, None))
        curves = GAINS_BY_PHOTOS.get(name)
        at = None if curves is None else [nearest_count(curve, per_class) for curve in curves]
        gains = (0.0,) * len(MEASURED_SETS) if name == DEFAULT_BACKBONE else (
            None if at is None else tuple(gain for _, gain in at))
        size_mb = sum(m.params for m in members) * BYTES_PER_PARAMETER / 1e6
        dim = sum(m.feature_dim for m in members)
        rows.append(Cost(name, gains, None if at is None else tuple(count for count, _ in at),
                         photos * VIEWS * forward_s * PASS_FACTOR, try_ms, fps, size_mb,
                         size_mb + most_reference_rows(dim) * dim * BYTES_PER_PARAMETER / 1e6, timed))
    return rows


def nearest_count(curve: tuple[tuple[int, float], ...], per_class: float) -> tuple[int, float]:
    """The (photos a class, gain) of `curve` measured nearest `per_class` photos a class (by ratio); past the last
    count (all of the set's photos) the last."""
    return min(curve, key=lambda point: abs(math.log(max(per_class, 1.0) / point[0])) if per_class < curve[-1][0]
               else -point[0])


def most_alike(classes: int) -> int:
    """Index in MEASURED_SETS of the set whose class count is nearest a project's (by ratio)."""
    return min(range(len(MEASURED_SETS)), key=lambda i: abs(math.log(max(classes, 1) / MEASURED_SETS[i][1])))
