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

# Measured with `python -m bench.bench_finetune` (flowers5: 400 train / 200 val photos; hymenoptera: 244 / 153),
# EfficientNet-Lite backbones, default settings, on the 2-core development machine under load.
# (backbone, blocks) -> (accuracy points over the Lite0 head, mean of the two sets;
#                        fine-tuning stage seconds / (training views x one forward pass))
MEASURED: dict[tuple[str, int], tuple[float, float]] = {
    ("efficientnet_lite0", 0): (0.0, 0.0),
}
# Forward milliseconds per photo measured beside those figures, for backbones not yet timed on this machine.
REFERENCE_MS = {"efficientnet_lite0": 25.0, "efficientnet_lite1": 38.0, "efficientnet_lite2": 55.0}
# Test-time mirroring (a photo averaged with its mirror image), measured in the same runs: helps on average?
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
            seconds = photos * VIEWS * forward_s * (passes + finetune_factor)
            rows.append(Advice(name, blocks, seconds, gain, timed))
    return rows


def _nearest_factor(blocks: int) -> float:
    """A depth's fine-tuning cost measured on any backbone (relative to its own speed, so it carries over)."""
    factors = [factor for (_, b), (_, factor) in MEASURED.items() if b == blocks]
    return max(factors) if factors else 0.0
