"""The solved head on every shared photo set and three validation splits: before (256 principal directions),
now (the whole embedding), a full-dimensional reference, and test-time mirror averaging.

    TRANSFERLAB_CACHE=/work/cache python -m bench.bench_head [SET ...]

Each set's train/ folder is split as a project splits it: 20 % validation by content hash (split 0 is the
project's own rule; splits 1 and 2 hash the content with a salt). Training vectors are the photos and their
mirror images, as `core.model.train` uses them; the embeddings come from the cache (computed once if missing).
Columns:
  before     the head as it was: the embedding projected onto its top 256 principal directions, then
             scikit-learn's L-BFGS for each C (the same folds, C picked the same way)
  now        core.model.head.search_head: the whole embedding
  reference  scikit-learn's float64 L-BFGS on the whole embedding at the C `now` picked, solved to 1e-6;
             "same" is the share of validation photos both put in the same class, "loss ratio" now's
             validation log loss over the reference's (the issue's test of a lossless shortcut: >= 99 %, within 1 %)
  mirror     now's head, each validation photo's probabilities averaged with its mirror image's
  mirror emb now's head on the average of the photo's and its mirror image's embeddings
  held-out   (flowers5, hymenoptera) the set's val/ folder, never seen: plain and mirror-averaged accuracy
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from bench.common import dataset, table
from core.model.backbones import DEFAULT_BACKBONE, get_backbone
from core.model.embed import EmbeddingCache, embed_views
from core.serving.evaluate import image_folder
from core.model.head import STRENGTHS, _folds, scores, search_head
from core.images import sha256_hex
from core.store.records import split_key

SETS = ("flowers5", "hymenoptera", "groceries25")
SPLITS = (0, 1, 2)
VAL_SHARE = 0.2
BEFORE_COMPONENTS = 256


def embedded(folder, class_names=None):
    """(plain, mirrored) embeddings of an ImageFolder tree, labels, content hashes and class names."""
    paths, labels, class_names = image_folder(folder, class_names)
    shas = [sha256_hex(p.read_bytes()) for p in paths]
    plain, mirrored = embed_views(paths, shas, get_backbone(DEFAULT_BACKBONE), (False, True), cache=EmbeddingCache())
    if len(plain.ok) != len(paths):
        raise SystemExit(f"{len(paths) - len(plain.ok)} photos of {folder} could not be read")
    return plain.vectors, mirrored.vectors, np.asarray(labels), shas, class_names


def is_val(shas: list[str], split: int) -> np.ndarray:
    """The project's split (0) or the same rule on salted hashes."""
    keys = [split_key(sha if split == 0 else hashlib.sha256(f"{split}:{sha}".encode()).hexdigest()) for sha in shas]
    return np.array(keys) < VAL_SHARE


def before_projection(x: np.ndarray):
    """The coordinates the head used before: centred, scaled to mean norm 10, top 256 principal directions
    (randomized SVD, one power iteration)."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    centred = x - mean
    scale = 10.0 / np.sqrt((centred ** 2).sum(axis=1).mean())
    sketch = centred @ np.random.default_rng(0).normal(size=(x.shape[1], BEFORE_COMPONENTS + 10))
    q = np.linalg.qr(centred @ (centred.T @ sketch))[0]
    directions = np.linalg.svd(q.T @ centred, full_matrices=False)[2][:BEFORE_COMPONENTS].T * scale
    return lambda v: (np.asarray(v, np.float64) - mean) @ directions


def full_coordinates(x: np.ndarray):
    """The same centring and scale on the whole embedding."""
    x = x.astype(np.float64)
    mean = x.mean(axis=0)
    scale = 10.0 / np.sqrt(((x - mean) ** 2).sum(axis=1).mean())
    return lambda v: (np.asarray(v, np.float64) - mean) * scale


def sklearn_fit(z, labels, strength, tol, max_iter, warm=None):
    from sklearn.linear_model import LogisticRegression

    model = warm or LogisticRegression(class_weight="balanced", tol=tol, max_iter=max_iter, warm_start=True)
    model.set_params(C=strength)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(z, labels)


def probabilities(model, z, n_classes):
    """A scikit-learn model's probabilities over all classes (absent ones 0)."""
    out = np.zeros((len(z), n_classes))
    out[:, model.classes_] = model.predict_proba(z)
    return out


def before(x, labels, groups, n_classes, val_x):
    """The old head: projection, then scikit-learn's L-BFGS (tol 1e-4, 300 iterations) warm-started along C."""
    start = time.perf_counter()
    with threadpool_limits(1):
        project = before_projection(x)
        z = project(x)
        folds = _folds(labels, groups, 0)
        fold_models, full_model, rows = [None] * len(folds), None, []
        for strength in STRENGTHS:
            out = np.zeros((len(z), n_classes))
            for f, (train, test) in enumerate(folds):
                fold_models[f] = sklearn_fit(z[train], labels[train], strength, 1e-4, 300, fold_models[f])
                out[test] = probabilities(fold_models[f], z[test], n_classes)
            full_model = sklearn_fit(z, labels, strength, 1e-4, 300, full_model)
            rows.append((scores(out, labels)[0], strength, probabilities(full_model, project(val_x), n_classes)))
    loss, strength, val_probabilities = min(rows, key=lambda r: r[0])
    return val_probabilities, strength, time.perf_counter() - start


def reference(x, labels, n_classes, strength, views):
    """scikit-learn's float64 L-BFGS on the whole embedding at one C, solved to 1e-6: probabilities for each view."""
    with threadpool_limits(1):
        coords = full_coordinates(x)
        # With two classes scikit-learn fits one logit w = w1 - w0; the head's two logits, each penalised, are the
        # same model at twice the C (the penalty is least with w1 = -w0 = w / 2).
        model = sklearn_fit(coords(x), labels, strength * (2 if n_classes == 2 else 1), 1e-6, 5000)
        return [probabilities(model, coords(v), n_classes) for v in views]


def measure(name: str, split: int, data, held_out) -> list:
    plain, mirrored, labels, shas, class_names = data
    n_classes = len(class_names)
    val = is_val(shas, split)
    train_x = np.concatenate([plain[~val], mirrored[~val]])
    train_y = np.tile(labels[~val], 2)
    groups = np.tile(np.arange((~val).sum()), 2)
    val_y = labels[val]

    old_p, old_c, old_s = before(train_x, train_y, groups, n_classes, plain[val])
    start = time.perf_counter()
    search = search_head(train_x, train_y, n_classes, groups, val=(plain[val], val_y))
    now_s = time.perf_counter() - start
    head = search.head
    now_p, now_mp = head.probabilities(plain[val]), head.probabilities(mirrored[val])
    emb_p = head.probabilities((plain[val] + mirrored[val]) / 2)
    ref_p, old_ref_p = reference(train_x, train_y, n_classes, search.strength, [plain[val]])[0], None
    if not np.isclose(old_c, search.strength):  # the projection's own C, for its "same" column
        old_ref_p = reference(train_x, train_y, n_classes, old_c, [plain[val]])[0]
    same = lambda a, b: float((a.argmax(axis=1) == b.argmax(axis=1)).mean())  # noqa: E731
    row = [name, split, int((~val).sum()), int(val.sum()),
           *scores(old_p, val_y)[::-1], old_s, same(old_p, ref_p if old_ref_p is None else old_ref_p),
           *scores(now_p, val_y)[::-1], now_s, search.strength,
           *scores(ref_p, val_y)[::-1], same(now_p, ref_p), scores(now_p, val_y)[0] / scores(ref_p, val_y)[0],
           *scores((now_p + now_mp) / 2, val_y)[::-1], scores(emb_p, val_y)[1]]
    if held_out is not None:
        h_plain, h_mirrored, h_labels = held_out
        hp, hm = head.probabilities(h_plain), head.probabilities(h_mirrored)
        row += [scores(hp, h_labels)[1], scores((hp + hm) / 2, h_labels)[1]]
    else:
        row += ["", ""]
    return row


HEADERS = ["set", "split", "train", "val",
           "before acc", "before loss", "before s", "before same",
           "now acc", "now loss", "now s", "C",
           "ref acc", "ref loss", "same", "loss ratio",
           "mirror acc", "mirror loss", "mirror emb acc",
           "held-out acc", "held-out mirror"]


def shown(row: list) -> list:
    """Accuracy and loss with three decimals; seconds and C as the table prints them."""
    return [f"{v:.3f}" if isinstance(v, float) and HEADERS[i] not in ("before s", "now s", "C") else v
            for i, v in enumerate(row)]


def main(names: list[str] | None = None) -> None:
    rows = []
    for name in names or SETS:
        root = dataset(name)
        data = embedded(root / "train")
        held = embedded(root / "val", data[4])[:3] if (root / "val").is_dir() else None
        for split in SPLITS:
            rows.append(measure(name, split, data, held))
            print(table(HEADERS, [shown(rows[-1])]), flush=True)
    print(f"\nLite0 embeddings (photo + mirror image for training), {len(SPLITS)} validation splits per set, "
          f"{os.cpu_count()} CPU cores (before and now: one BLAS thread); "
          "before = 256 principal directions + scikit-learn, now = core.model.head on the whole embedding")
    print(table(HEADERS, [shown(r) for r in rows]))
    print("\nmean over splits (accuracy points: now - before, mirror - now, mirror embedding - now; "
          "held-out: mirror - plain)")
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        mean = lambda i: float(np.mean([r[i] for r in mine]))  # noqa: E731
        held = f", held-out mirror {100 * (mean(20) - mean(19)):+.1f}" if mine[0][19] != "" else ""
        print(f"{name}: now {100 * (mean(8) - mean(4)):+.1f} points over before (log loss {mean(9):.3f} vs "
              f"{mean(5):.3f}), {mean(10):.1f} s vs {mean(6):.1f} s; mirror {100 * (mean(16) - mean(8)):+.1f} "
              f"(log loss {mean(17) - mean(9):+.3f}), mirror embedding {100 * (mean(18) - mean(8)):+.1f}{held}; "
              f"same as reference {min(r[14] for r in mine):.3f} at worst, loss ratio "
              f"{min(r[15] for r in mine):.3f}-{max(r[15] for r in mine):.3f}")
    gain = np.mean([r[16] - r[8] for r in rows])
    print(f"mirror averaging over all sets and splits: {100 * gain:+.2f} points")


if __name__ == "__main__":
    main(sys.argv[1:] or None)
