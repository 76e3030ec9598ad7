"""Which novelty score separates best? Candidate scores compared on the same embeddings, far and related checks.

    TRANSFERLAB_CACHE=/work/cache python -m bench.bench_novelty_scores [efficientnet_lite0+efficientnet_lite1+...]

Every score is computed from what a run already has: its training photos' embeddings (each photo and its mirror
image) and its head (`search_head`, as the app solves it). Checks, as in bench/bench_novelty.py:
- far: a flowers5 model shown every groceries25 photo; a groceries25 model (a fifth held out by content as its test
  photos) shown every flowers5 and hymenoptera photo: "caught" is the share of them flagged at the threshold that
  flags 5 % of the run's validation photos, "false alarms" the share of its test photos flagged there;
- related: a groceries25 model with 5 classes held out (3 draws) shown those classes; a flowers5 model with one
  kind held out (each of the 5) shown that kind: AUROC against the model's own test photos.
Scores (higher = more unlike the training photos):
- `knnK`: 1 - cosine to the K-th nearest training embedding (knn5 is the app's score);
- `msp`, `energy`: minus the top probability, minus the log-sum-exp of the head's logits;
- `maha`, `rmaha`: Mahalanobis distance to the nearest class mean on unit embeddings with one covariance shared by
  the classes, shrunk halfway to a multiple of the identity; relative: minus the distance to the mean of all;
- `a+b`: the sum of the parts, each standardised on the validation photos' scores (`2knn1` counts twice).
A joined name compares the members' embeddings side by side (each at its own size).
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from scipy.special import logsumexp  # noqa: E402

from bench.bench_novelty import held_out, test_split  # noqa: E402
from bench.common import dataset, table  # noqa: E402
from core.jobs.pipeline import data_from_folders  # noqa: E402
from core.model.backbones import get_backbone  # noqa: E402
from core.model.embed import embed_views  # noqa: E402
from core.model.head import search_head  # noqa: E402
from core.model.joined import search_joined_head  # noqa: E402
from core.model.novelty import auroc, unit  # noqa: E402
from core.model.train import Sample, TrainData  # noqa: E402
from core.serving.evaluate import photo_files  # noqa: E402
from core.images import sha256_hex  # noqa: E402

SHRINK = 0.5
COMBINATIONS = (("knn5", "energy"), ("knn1", "energy"), ("knn1", "knn1", "energy"), ("knn5", "rmaha"),
                ("rmaha", "energy"))


class Embeddings:
    """Plain and mirrored embeddings of every photo of the shared sets, by path (members side by side)."""

    def __init__(self, members: list[str]):
        paths = sorted({p for name in ("flowers5", "groceries25", "hymenoptera") for p in photo_files(dataset(name))})
        shas = [sha256_hex(p.read_bytes()) for p in paths]
        views = [embed_views(paths, shas, get_backbone(m), (False, True)) for m in members]
        assert all(v[0].ok == list(range(len(paths))) for v in views), "every shared photo is readable"
        self.plain, self.mirrored = (np.concatenate([v[i].vectors for v in views], axis=1) for i in (0, 1))
        self.row = {p: i for i, p in enumerate(paths)}
        self.sizes = [v[0].vectors.shape[1] for v in views]

    def __call__(self, paths, mirrored: bool = False) -> np.ndarray:
        return (self.mirrored if mirrored else self.plain)[[self.row[p] for p in paths]]


class Scores:
    """Every candidate score of one run (its training and validation photos)."""

    def __init__(self, data: TrainData, e: Embeddings):
        train = [s.path for s in data.train]
        labels = np.tile([s.label for s in data.train], 2)
        x = np.concatenate([e(train), e(train, mirrored=True)])
        val = e([s.path for s in data.val])
        solve = search_head if len(e.sizes) == 1 else \
            lambda *a, **k: search_joined_head(*a, sizes=e.sizes, **k)  # noqa: E731
        self.head = solve(x, labels, len(data.class_names), np.tile(np.arange(len(train)), 2),
                          val=(val, np.array([s.label for s in data.val]))).head
        self.reference = unit(x)
        z = unit(x)
        self.means = np.stack([z[labels == c].mean(0) for c in range(len(data.class_names))])
        self.precision = shrunk_inverse(z - self.means[labels])
        self.mean, self.all_precision = z.mean(0), shrunk_inverse(z - z.mean(0))
        self.val = self.parts(val)

    def parts(self, x: np.ndarray) -> dict[str, np.ndarray]:
        logits = x @ self.head.kernel + self.head.bias
        similarity = unit(x) @ self.reference.T
        out = {"msp": -np.exp(logits.max(1) - logsumexp(logits, axis=1)), "energy": -logsumexp(logits, axis=1)}
        for k in (1, 5, 20):
            out[f"knn{k}"] = 1 - np.partition(similarity, similarity.shape[1] - k, axis=1)[:, -k]
        z = unit(x)
        zp = z @ self.precision
        to_means = (zp * z).sum(1)[:, None] - 2 * zp @ self.means.T + ((self.means @ self.precision) * self.means).sum(1)
        centred = z - self.mean
        out["maha"] = to_means.min(1)
        out["rmaha"] = (to_means - ((centred @ self.all_precision) * centred).sum(1)[:, None]).min(1)
        return out

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        out = self.parts(x)
        for names in COMBINATIONS:
            out["+".join(names).replace("knn1+knn1", "2knn1")] = sum(
                (out[n] - self.val[n].mean()) / self.val[n].std() for n in names)
        return out


def shrunk_inverse(centred: np.ndarray) -> np.ndarray:
    covariance = centred.T @ centred / len(centred)
    d = len(covariance)
    return np.linalg.inv((1 - SHRINK) * covariance + SHRINK * np.trace(covariance) / d * np.eye(d))


def checks(e: Embeddings):
    """(kind, name, run's data, its test photos, {other: photos}) for every check."""
    flowers, groceries, hymenoptera = dataset("flowers5"), dataset("groceries25"), dataset("hymenoptera")
    unseen = data_from_folders(flowers / "val")
    flowers_train = data_from_folders(flowers / "train")
    yield "far", "flowers5 model", flowers_train, unseen.train + unseen.val, {"groceries25": photo_files(groceries)}
    all_groceries = data_from_folders(groceries / "train")
    trained, test = test_split(all_groceries)
    yield "far", "groceries25 model", trained, test, {"flowers5": photo_files(flowers),
                                                      "hymenoptera": photo_files(hymenoptera)}
    for seed in range(3):
        names, trained, test, hidden = held_out(all_groceries, seed)
        yield "related", f"groceries -{names}", trained, test, {"held out": hidden}
    for c, kind in enumerate(flowers_train.class_names):
        keep = lambda samples: [Sample(s.path, s.label - (s.label > c), s.sha256)  # noqa: E731
                                for s in samples if s.label != c]
        data = TrainData([n for n in flowers_train.class_names if n != kind], keep(flowers_train.train),
                         keep(flowers_train.val))
        hidden = [s.path for s in flowers_train.train + flowers_train.val + unseen.train + unseen.val if s.label == c]
        yield "related", f"flowers -{kind}", data, keep(unseen.train + unseen.val), {"held out": hidden}


def main(backbone: str = "efficientnet_lite0") -> None:
    e = Embeddings(backbone.split("+"))
    far, related = {}, {}
    for kind, name, data, test, others in checks(e):
        scores = Scores(data, e)
        known, val = scores(e([s.path for s in test])), scores(e([s.path for s in data.val]))
        for other, paths in others.items():
            unknown = scores(e(paths))
            for score in known:
                if kind == "far":  # at the threshold that flags 5 % of the validation photos
                    threshold = np.quantile(val[score], 0.95)
                    far.setdefault(score, []).append((float((unknown[score] > threshold).mean()),
                                                      float((known[score] > threshold).mean()),
                                                      auroc(known[score], unknown[score])))
                else:
                    related.setdefault(score, []).append(auroc(known[score], unknown[score]))
        print(f"{name}: done", flush=True)
    rows = [[score, f"{min(c for c, _, _ in far[score]):.3f}", f"{max(f for _, f, _ in far[score]):.3f}",
             f"{min(a for _, _, a in far[score]):.3f}", f"{np.mean(related[score][:3]):.3f}",
             " ".join(f"{a:.2f}" for a in related[score][:3]), f"{np.mean(related[score][3:]):.3f}",
             " ".join(f"{a:.2f}" for a in related[score][3:])] for score in far]
    print(f"{backbone}: far = worst of the 3 far checks, related = AUROC per held-out draw")
    print(table(["score", "far caught", "far false alarms", "far AUROC", "groceries held out", "(3 draws)",
                 "flowers held out", "(each kind)"], rows))


if __name__ == "__main__":
    main(*sys.argv[1:2])
