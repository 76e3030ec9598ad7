"""Which offline backbone and fine-tuning depth to pick: expected time on this machine, and measured gain.

Time comes from the backbone's measured speed here (core.speed) and, for fine-tuning, from how many
forward passes' worth of work a whole fine-tuning stage took in the measurements below; gain is
what those measurements found, in validation-accuracy points over the Lite0 head alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.backbones import REGISTRY

DEPTHS = range(5)   # blocks unfrozen: 0 (head only) to 4
VIEWS = 2           # every photo is embedded as is and mirrored
# One pass over the photos (decode, resize, both views through the network) took this many forward passes' worth
# of time in the measurements below: reading and resizing JPEGs costs more than the network itself.
PASS_FACTOR = 7.0

# Measured with `python -m bench.bench_finetune` on 2025-11-25 (flowers5: 400 train / 200 val photos; hymenoptera:
# 244 / 153), default settings, on the 2-core development machine shared with other work (load 6-12), Lite0 at
# 7.9 ms per forward pass. (backbone, blocks) -> (validation-accuracy points over the Lite0 head, mean of the two
# sets; the fine-tuning stage's seconds / (training views x one forward pass), flowers5).
# Every depth kept the head on hymenoptera (no epoch beat its validation loss); on flowers5 one and two blocks
# fine-tuned (+0.0 and -1.5 points), three and four kept the head. The cost factor of one to three blocks measured
# 4.5, 4.2 and 4.4 (the same within the noise of a loaded machine): their mean is used for all three.
MEASURED: dict[tuple[str, int], tuple[float, float]] = {
    ("efficientnet_lite0", 0): (0.0, 0.0),
    ("efficientnet_lite0", 1): (0.0, 4.4),
    ("efficientnet_lite0", 2): (-0.8, 4.4),
    ("efficientnet_lite0", 3): (0.0, 4.4),
    ("efficientnet_lite0", 4): (0.0, 9.7),
    # Heads alone: Lite1 0.860 on flowers5 (-5.5) and 0.954 on hymenoptera (+2.6); Lite2 0.875 (-4.0) and 0.961 (+3.3).
    ("efficientnet_lite1", 0): (-1.5, 0.0),
    ("efficientnet_lite2", 0): (-0.3, 0.0),
}
# Forward milliseconds per photo (LiteRT, batches of 8) measured beside those figures, for backbones not yet
# timed on this machine.
REFERENCE_MS = {"efficientnet_lite0": 7.9, "efficientnet_lite1": 11.4, "efficientnet_lite2": 15.2}
# Test-time mirroring (a photo averaged with its mirror image), measured in the same runs: +1.0 point on flowers5,
# +0.7 on hymenoptera (Lite0), +0.2 to +0.6 on the harder check, +0.0 for the Lite1/Lite2 heads, never worse;
# it doubles the prediction time.
MIRROR_TTA_HELPS = True


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
