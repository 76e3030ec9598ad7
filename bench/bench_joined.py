"""Offline backbones alone and joined by '+': accuracy on three splits of each shared set, and what joining costs.

    python -m bench.bench_joined [accuracy] [methods] [pixels] [photos] [unseen] [preparation] [speed] [costs]
        [--sets flowers5,hymenoptera,groceries25] [--choices A,B+C,...] [--cost-choices A,B+C,...]
        [--photos N] [--rounds N] [--method-splits N] [--workers N]

accuracy: every photo of a set (its train/ and val/ folders together) is split three ways, 20 % for validation
each time, by three different parts of the photo's content hash (split 0 is the store's own rule); each choice
trains as the app does (`core.model.train.train`, head only, default settings) and is scored on that split's validation
photos (as is, and averaged with their mirror images). Embeddings come from the shared cache (TRANSFERLAB_CACHE):
run it with the cache filled, or the first pass embeds every photo.

methods: the head on the raw concatenation (`core.model.head.search_head`, the head before 2026-12-04) against the
joined head (`core.model.joined.search_joined_head`: every dimension put on a like scale first), for every choice
(single networks too, to show what the scaling does there), on the five hash splits and then seeded random 20 %
splits up to --method-splits in all; each split scored as the model answers (mirror-averaged), the scaled head's
gain given as a paired difference with its standard error. Three splits of 120 flowers move by a photo or two: the
choice of method and of the joined choice listed first were made on 15-20 splits. --workers N solves N heads at once,
one BLAS thread each (on a machine with more cores than this one).

pixels (not run by default): the joined head, as in methods, on the smaller members' vectors as the app makes them
(the photo at the joined size, resized in their graph as the downloads do) against each member's own (PIL's resize of
the decoded photo to its size, the app's way until 2026-12-04), paired over --method-splits splits.

photos: the joined choices' gain over Lite0 alone at a few photo counts per class (--per-class, 0 for all): on
--photo-splits splits of each set (as methods), the training part cut to that many photos of each class (the same
seeded draw for every choice, the smaller counts nested in the larger), each choice's head as the app solves it (Lite0
the raw head, a joined choice search_joined_head), scored mirror-averaged on the split's whole validation part. Prints
the paired gains and the figures as core.model.advice.GAINS_BY_PHOTOS holds them.

unseen, per set with a val/ folder and choice (Lite0 and the joined choices offered): trained as a project on
train/ (its own validation split), scored once on val/, photos it never saw.

preparation, per set and choice (Lite0 and the joined choices offered): time to prepare the whole set (decode,
resize and embed as is and mirrored, nothing cached), from the pace on a sample of its photos.

speed, per choice, interleaved: Try it per photo (the app's predictor, one decoded photo at a time, median) and
webcam frames the server's live path classifies a second (an upper bound on what bench_live shows).

costs, per set and choice, trained on split 0: Try it per photo, the sizes of the files the app and the downloads use,
and the top-1 agreement of the downloads (model.tflite and model.keras: one input at the largest member's size, the
smaller members resized in the graph) with the app's predictor (the members' LiteRT files, the smaller ones resizing
the same photo in their graph, as the embeddings were made) on the validation photos, with the largest difference of
a probability.
Live pictures a second come from `python -m bench.bench_live --backbone NAME,NAME` (side by side in one run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench.common import dataset, table, try_it_ms  # noqa: E402
from core.model.joined import OFFERED  # noqa: E402

MEMBERS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CHOICES = (*MEMBERS, "efficientnet_lite0+efficientnet_lite1", "efficientnet_lite0+efficientnet_lite2",
           "efficientnet_lite1+efficientnet_lite2", "efficientnet_lite0+efficientnet_lite1+efficientnet_lite2")
SPLITS = 3
VAL_SHARE = 0.2


def short(name: str) -> str:
    return name.replace("efficientnet_lite", "L")


def all_photos(name: str):
    """Every photo of a shared set (train/ and val/ folders together) as samples, and the class names."""
    from core.jobs.pipeline import data_from_folders

    root = dataset(name)
    data = data_from_folders(root / "train", root / "val" if (root / "val").is_dir() else None)
    return data.train + data.val, data.class_names


def split(samples, class_names, index: int):
    """Split `index` of the photos: validation when the index-th 12 hex digits of the hash fall under VAL_SHARE."""
    from core.model.train import TrainData

    is_val = [int(s.sha256[12 * index:12 * index + 12], 16) / 16 ** 12 < VAL_SHARE for s in samples]
    return TrainData(class_names, [s for s, v in zip(samples, is_val) if not v],
                     [s for s, v in zip(samples, is_val) if v])


def right(probabilities: np.ndarray, samples) -> float:
    return float((probabilities.argmax(axis=1) == np.array([s.label for s in samples])).mean())


def accuracy(sets: list[str], choices: list[str]) -> None:
    """Validation accuracy of each choice on three splits of each set; the mean over the splits beside them."""
    from core.model.train import TrainConfig, train

    rows, means = [], {}
    for name in sets:
        samples, class_names = all_photos(name)
        for choice in choices:
            scores, mirrored, seconds = [], [], []
            for index in range(SPLITS):
                data = split(samples, class_names, index)
                result = train(data, TrainConfig(backbone=choice))
                scores.append(right(result.val_probabilities, result.val_samples))
                mirrored.append(right(result.val_probabilities_averaged, result.val_samples))
                seconds.append(result.timings["head_seconds"])
            means[(name, choice)] = statistics.mean(scores)
            rows.append([name, short(choice), *[f"{s:.3f}" for s in scores], f"{statistics.mean(scores):.3f}",
                         f"{statistics.mean(mirrored):.3f}", statistics.mean(seconds)])
            print("done:", rows[-1], file=sys.stderr, flush=True)
    print(f"Validation accuracy, head only, {SPLITS} splits of every photo ({VAL_SHARE:.0%} validation each)")
    print(table(["set", "backbone", *[f"split {i}" for i in range(SPLITS)], "mean", "+mirror mean", "head s"], rows))
    gains = [[short(c), *[f"{100 * (means[(n, c)] - means[(n, MEMBERS[0])]):+.1f}" for n in sets],
              f"{100 * statistics.mean(means[(n, c)] - means[(n, MEMBERS[0])] for n in sets):+.1f}"]
             for c in choices if (sets[0], MEMBERS[0]) in means]
    print("\nPoints over Lite0 alone (mean of the splits)")
    print(table(["backbone", *sets, "mean"], gains))


HASH_SPLITS = 5  # 12 hex digits each: the five whole parts of a 64-digit content hash


def method_splits(count: int, n: int, samples) -> list[np.ndarray]:
    """Validation masks: splits by the five parts of the content hash (the first three are `accuracy`'s), then seeded
    random 20 % splits (seed = the split's number)."""
    masks = [np.array([int(s.sha256[12 * i:12 * i + 12], 16) / 16 ** 12 < VAL_SHARE for s in samples])
             for i in range(min(count, HASH_SPLITS))]
    return masks + [np.random.default_rng(i).random(n) < VAL_SHARE for i in range(HASH_SPLITS, count)]


def _method_job(job) -> tuple:
    """(set, choice, split, method, mirror-averaged accuracy, log loss) of one head on one split."""
    from core.model.head import search_head, softmax
    from core.model.joined import search_joined_head

    name, choice, index, method, (plain, flipped, labels, val, n_classes, sizes) = job
    train = ~val
    x = np.concatenate([plain[train], flipped[train]])
    groups = np.tile(np.arange(train.sum()), 2)
    head = (search_joined_head(x, np.tile(labels[train], 2), n_classes, groups, sizes=sizes) if method == "scaled"
            else search_head(x, np.tile(labels[train], 2), n_classes, groups)).head
    p = (softmax(plain[val] @ head.kernel + head.bias) + softmax(flipped[val] @ head.kernel + head.bias)) / 2
    y = labels[val]
    return (name, choice, index, method, float((p.argmax(1) == y).mean()),
            float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-15, 1)).mean()))


def methods(sets: list[str], choices: list[str], splits: int, workers: int) -> None:
    """The raw-concatenation head against the scaled joined head, paired over `splits` splits of each set."""
    from core.model.backbones import get_backbone
    from core.model.embed import embed_views

    jobs = []
    for name in sets:
        samples, class_names = all_photos(name)
        labels = np.array([s.label for s in samples])
        masks = method_splits(splits, len(samples), samples)
        for choice in choices:
            plain, flipped = (v.vectors.astype(np.float32) for v in embed_views(
                [s.path for s in samples], [s.sha256 for s in samples], get_backbone(choice)))
            assert len(plain) == len(samples), f"{name}: unreadable photos"
            sizes = [m.feature_dim for m in get_backbone(choice).members]
            jobs += [(name, choice, i, method, (plain, flipped, labels, mask, len(class_names), sizes))
                     for i, mask in enumerate(masks) for method in ("raw", "scaled")]
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers, initializer=_one_thread) as pool:
            results = list(pool.map(_method_job, jobs))
    else:
        results = [_method_job(job) for job in jobs]
    by = {(r[0], r[1], r[2], r[3]): r[4:] for r in results}
    rows = []
    for name in sets:
        for choice in choices:
            raw = [by[(name, choice, i, "raw")] for i in range(splits)]
            scaled = [by[(name, choice, i, "scaled")] for i in range(splits)]
            gain = [100 * (s[0] - r[0]) for r, s in zip(raw, scaled)]
            loss = [s[1] - r[1] for r, s in zip(raw, scaled)]
            rows.append([name, short(choice), splits, f"{statistics.mean(r[0] for r in raw):.3f}",
                         f"{statistics.mean(s[0] for s in scaled):.3f}",
                         f"{statistics.mean(gain):+.2f} ± {statistics.stdev(gain) / splits ** 0.5:.2f}",
                         f"{statistics.mean(r[1] for r in raw):.3f}", f"{statistics.mean(s[1] for s in scaled):.3f}",
                         f"{statistics.mean(loss):+.4f} ± {statistics.stdev(loss) / splits ** 0.5:.4f}"])
            print("done:", rows[-1], file=sys.stderr, flush=True)
    print(f"\nHead on the raw concatenation vs every dimension on a like scale (search_joined_head), {splits} splits "
          "(5 hash + seeded random), mirror-averaged validation")
    print(table(["set", "backbone", "splits", "raw acc", "scaled acc", "gain pts ± se", "raw log loss",
                 "scaled log loss", "change ± se"], rows))


def subsample(labels: np.ndarray, train: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """A mask of at most `per_class` training photos of each class, drawn by `seed`: the first ones of one seeded
    order of each class, so that a smaller count's photos are among a larger one's."""
    keep = np.zeros(len(labels), bool)
    rng = np.random.default_rng(seed)
    for label in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(train & (labels == label)))
        keep[rows[:per_class] if per_class else rows] = True
    return keep


def photos(sets: list[str], choices: list[str], counts: list[int], splits: int) -> None:
    """Each choice's gain over choices[0] (Lite0) with the training part of each split cut to `counts` photos a class
    (0: all of them), paired over `splits` splits, mirror-averaged validation."""
    from core.model.backbones import get_backbone
    from core.model.embed import embed_views

    rows, figures = [], {}
    for name in sets:
        samples, class_names = all_photos(name)
        labels = np.array([s.label for s in samples])
        masks = method_splits(splits, len(samples), samples)
        views = {}
        for choice in choices:
            views[choice] = [v.vectors.astype(np.float32) for v in embed_views(
                [s.path for s in samples], [s.sha256 for s in samples], get_backbone(choice))]
            assert len(views[choice][0]) == len(samples), f"{name}: unreadable photos"
        for count in counts:
            scores = {c: [] for c in choices}
            for index, val in enumerate(masks):
                keep = subsample(labels, ~val, count, seed=index)
                for choice in choices:
                    plain, flipped = views[choice]
                    sizes = [m.feature_dim for m in get_backbone(choice).members]
                    # the training photos cut down; _method_job trains on ~val, so the others are left out of both
                    used = keep | val
                    scores[choice].append(_method_job((name, choice, index, "scaled" if len(sizes) > 1 else "raw",
                                                       (plain[used], flipped[used], labels[used], val[used],
                                                        len(class_names), sizes)))[4:])
            per_class = round(statistics.mean(np.bincount(labels[subsample(labels, ~masks[0], count, 0)])))
            for choice in choices[1:]:
                gain = [100 * (s[0] - r[0]) for r, s in zip(scores[choices[0]], scores[choice])]
                figures.setdefault(choice, {}).setdefault(name, []).append((per_class, round(statistics.mean(gain), 1)))
                rows.append([name, per_class, short(choice), splits,
                             f"{statistics.mean(r[0] for r in scores[choices[0]]):.3f}",
                             f"{statistics.mean(s[0] for s in scores[choice]):.3f}",
                             f"{statistics.mean(gain):+.1f} ± {statistics.stdev(gain) / splits ** 0.5:.1f}",
                             f"{statistics.mean(r[1] for r in scores[choices[0]]):.3f}",
                             f"{statistics.mean(s[1] for s in scores[choice]):.3f}"])
                print("done:", rows[-1], file=sys.stderr, flush=True)
    print(f"\nGain over {short(choices[0])} by training photos a class, {splits} splits, mirror-averaged validation "
          f"(load average {os.getloadavg()[0]:.1f} at the end)")
    print(table(["set", "photos a class", "backbone", "splits", "Lite0 acc", "acc", "gain pts ± se", "Lite0 log loss",
                 "log loss"], rows))
    print("\nGAINS_BY_PHOTOS = {")
    for choice, by_set in figures.items():
        print(f"    {choice!r}: (")
        for name in sets:
            print(f"        {tuple(by_set[name])!r},  # {name}")
        print("    ),")
    print("}")


def pixels(sets: list[str], choices: list[str], splits: int) -> None:
    """The joined head on the smaller members' vectors as the app makes them (the joined-size photo resized in their
    graph, as the downloads do: `JoinedSpec.parts`) against each member's own (PIL's resize of the decoded photo to
    its size, the app's way until 2026-12-04), paired over the same splits, mirror-averaged."""
    from core.model.backbones import get_backbone
    from core.model.embed import embed_views

    rows = []
    for name in sets:
        samples, class_names = all_photos(name)
        labels = np.array([s.label for s in samples])
        paths, shas = [s.path for s in samples], [s.sha256 for s in samples]
        masks = method_splits(splits, len(samples), samples)
        for choice in choices:
            spec = get_backbone(choice)
            sizes = [m.feature_dim for m in spec.members]
            graph = [v.vectors.astype(np.float32) for v in embed_views(paths, shas, spec)]
            own = [embed_views(paths, shas, m) for m in spec.members]
            own = [np.concatenate([o[v].vectors for o in own], axis=1).astype(np.float32) for v in (0, 1)]
            scores = {way: [_method_job((name, choice, i, "scaled", (*views, labels, mask, len(class_names), sizes)))[4:]
                            for i, mask in enumerate(masks)] for way, views in (("own", own), ("graph", graph))}
            gain = [100 * (g[0] - o[0]) for o, g in zip(scores["own"], scores["graph"])]
            rows.append([name, short(choice), splits, *[f"{statistics.mean(s[0] for s in scores[w]):.3f}"
                                                        for w in ("own", "graph")],
                         f"{statistics.mean(gain):+.2f} ± {statistics.stdev(gain) / splits ** 0.5:.2f}",
                         *[f"{statistics.mean(s[1] for s in scores[w]):.3f}" for w in ("own", "graph")]])
            print("done:", rows[-1], file=sys.stderr, flush=True)
    print(f"\nSmaller members fed their own PIL resize vs the joined-size photo resized in the graph, {splits} splits, "
          "mirror-averaged validation, joined head")
    print(table(["set", "backbone", "splits", "own acc", "graph acc", "change pts ± se", "own log loss",
                 "graph log loss"], rows))


def _one_thread() -> None:
    from threadpoolctl import threadpool_limits
    threadpool_limits(1)


def unseen(sets: list[str], choices: list[str]) -> None:
    """Trained as a project on a set's train/ folder (its own 20 % validation split), scored once on its val/ folder,
    photos it never saw (the sets that have one)."""
    from core.model.backbones import get_backbone
    from core.model.embed import embed_views
    from core.jobs.pipeline import data_from_folders
    from core.model.train import TrainConfig, train

    rows = []
    for name in sets:
        root = dataset(name)
        if not (root / "val").is_dir():
            continue
        data, test = data_from_folders(root / "train"), data_from_folders(root / "val")
        test = test.train + test.val
        for choice in choices:
            result = train(data, TrainConfig(backbone=choice))
            views = embed_views([s.path for s in test], [s.sha256 for s in test], get_backbone(choice))
            plain, flipped = (result.head.probabilities(v.vectors) for v in views)
            rows.append([name, short(choice), len(data.train), len(data.val), len(test),
                         f"{right(plain, test):.3f}", f"{right((plain + flipped) / 2, test):.3f}"])
            print("done:", rows[-1], file=sys.stderr, flush=True)
    print("\nPhotos never seen: trained on train/ (20 % of it for validation), scored on val/")
    print(table(["set", "backbone", "train", "val", "test", "test acc", "+mirror"], rows))


def prepare_seconds(choice: str, samples) -> float:
    """Seconds per photo to embed photos as is and mirrored with nothing cached (decode and resize included)."""
    from core.model.backbones import get_backbone
    from core.model.embed import EmbeddingCache, embed_views

    spec = get_backbone(choice)
    with tempfile.TemporaryDirectory() as tmp:
        cache = EmbeddingCache(Path(tmp) / "embeddings.sqlite")
        warm = samples[:16]  # the interpreters' first calls allocate: not part of the steady pace
        embed_views([s.path for s in warm], [f"warm{i}" for i in range(len(warm))], spec, cache=cache)
        start = time.perf_counter()
        embed_views([s.path for s in samples], [s.sha256 for s in samples], spec, cache=cache)
        return (time.perf_counter() - start) / len(samples)


def preparation(sets: list[str], choices: list[str], photos: int) -> None:
    """Time to prepare each whole set (as is and mirrored, nothing cached), from the pace on `photos` of its photos."""
    rows = []
    for name in sets:
        samples, _ = all_photos(name)
        timed = samples[::max(1, len(samples) // photos)][:photos]  # spread over the classes
        for choice in choices:
            pace = prepare_seconds(choice, timed)
            rows.append([name, short(choice), len(samples), f"{1000 * pace:.0f}", f"{pace * len(samples):.0f}"])
            print("done:", rows[-1], file=sys.stderr, flush=True)
    print(f"\nPreparing a set's photos (decode once, every member, as is and mirrored), timed on {photos} of each")
    print(table(["set", "backbone", "photos", "ms per photo", "whole set s"], rows))


def costs(sets: list[str], choices: list[str]) -> None:
    """Per set and choice, trained on split 0: the exported model's agreement with the app on the validation photos;
    Try it per photo and the files' sizes."""
    from core.model.backbones import get_backbone
    from core.model.embed import litert_backbone
    from core.serving.export import TFLITE_FILES, assemble_downloads
    from core.images import load_rgb
    from core.serving.predict import Classifier, decode_upload
    from core.serving.predictor import load_predictor
    from core.jobs.pipeline import train_and_save
    from core.model.train import TrainConfig

    rows = []
    for name in sets:
        samples, class_names = all_photos(name)
        data = split(samples, class_names, 0)
        for choice in choices:
            spec = get_backbone(choice)
            with tempfile.TemporaryDirectory() as tmp:
                run = Path(tmp) / "run"
                train_and_save(data, TrainConfig(backbone=choice), run, assemble=False)
                assemble_downloads(run)
                predictor = load_predictor(run)
                try_it = try_it_ms(predictor, [decode_upload(s.path.read_bytes()) for s in data.val[:24]])
                paths = [s.path for s in data.val]
                app = predictor.predict_paths(paths)[0]
                exported = load_predictor_from(run / TFLITE_FILES[False], spec.input_size)(paths)
                keras_model = Classifier.load(run)
                downloaded = np.concatenate([keras_model.probabilities(np.stack(
                    [load_rgb(p, spec.input_size) for p in paths[i:i + 16]]).astype(np.float32))
                    for i in range(0, len(paths), 16)])
                app_mb = sum(litert_backbone(m).stat().st_size for m in spec.parts) / 1e6
                rows.append([name, short(choice), f"{try_it:.0f}", f"{app_mb:.1f}",
                             f"{(run / TFLITE_FILES[False]).stat().st_size / 1e6:.1f}",
                             f"{(run / 'model.keras').stat().st_size / 1e6:.1f}",
                             *[f"{(app.argmax(1) == other.argmax(1)).mean():.3f} ({np.abs(app - other).max():.0e})"
                               for other in (exported, downloaded)], len(app)])
                print("done:", rows[-1], file=sys.stderr, flush=True)
    print("\nTry it (one decoded photo, median of 24), sizes, and the downloads' top-1 agreement with the app's "
          "predictor on split 0's validation photos (in brackets the largest difference of a probability)")
    print(table(["set", "backbone", "Try it ms", "app LiteRT MB", "model.tflite MB", "model.keras MB",
                 "model.tflite agrees", "model.keras agrees", "photos"], rows))


def speed(choices: list[str], rounds: int) -> None:
    """Try it per photo and webcam frames classified a second by the server's live path, the choices interleaved
    round by round so that other work on the machine weighs on each alike."""
    from PIL import ImageOps

    from core.serving.live import LiveClassifier
    from core.serving.predict import decode_upload
    from core.serving.predictor import load_predictor
    from core.jobs.pipeline import train_and_save
    from core.model.train import TrainConfig

    samples, class_names = all_photos("hymenoptera")
    data = split(samples, class_names, 0)
    photos = [decode_upload(s.path.read_bytes()) for s in data.val[:12]]
    frames = [np.asarray(ImageOps.fit(photo, WEBCAM)) for photo in photos]  # what the webcam hands the server
    with tempfile.TemporaryDirectory() as tmp:
        live, tries = {}, {c: [] for c in choices}
        for choice in choices:
            train_and_save(data, TrainConfig(backbone=choice), Path(tmp) / choice, assemble=False)
            live[choice] = LiveClassifier(load_predictor(Path(tmp) / choice))
            live[choice].classify(frames[0])  # the first call allocates
        spent = {c: 0.0 for c in choices}
        for _ in range(rounds):
            for choice in choices:
                start = time.perf_counter()
                for frame in frames:
                    live[choice].classify(frame)
                spent[choice] += time.perf_counter() - start
                for photo in photos[:4]:
                    start = time.perf_counter()
                    live[choice].predictor.predict_images([photo])
                    tries[choice].append(time.perf_counter() - start)
    fps = {c: rounds * len(frames) / spent[c] for c in choices}
    print(f"\nSpeed, choices interleaved over {rounds} rounds (load average {os.getloadavg()[0]:.1f} at the end): Try it "
          f"= one decoded hymenoptera photo through the run's predictor; live = {WEBCAM[0]}x{WEBCAM[1]} frames through "
          "core.serving.live.LiveClassifier, the server's side of the live webcam (the browser's decoding and drawing not "
          "counted: an upper bound on bench_live's rate)")
    print(table(["backbone", "Try it ms (median)", "live frames a second", "vs Lite0"],
                [[short(c), f"{1000 * statistics.median(tries[c]):.1f}", f"{fps[c]:.1f}",
                  f"{fps[c] / fps[choices[0]]:.2f}"] for c in choices]))


WEBCAM = (640, 480)


def load_predictor_from(tflite: Path, size: int):
    """Probabilities of the exported TFLite model for photos on disk, each resized once to its input size."""
    from core.model.embed import LiteRTRunner
    from core.images import load_rgb

    runner = LiteRTRunner(tflite)
    return lambda paths: np.concatenate([runner(np.stack([load_rgb(p, size) for p in paths[i:i + 8]]).astype(
        np.float32)) for i in range(0, len(paths), 8)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["accuracy", "methods", "unseen", "preparation", "speed", "costs"])
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds of the speed part")
    parser.add_argument("--sets", default="flowers5,hymenoptera,groceries25")
    parser.add_argument("--choices", default=",".join(CHOICES), help="choices whose accuracy is measured")
    parser.add_argument("--cost-choices", default=",".join((MEMBERS[0], *OFFERED)), help="choices whose costs are")
    parser.add_argument("--method-splits", type=int, default=15, help="splits of the methods part")
    parser.add_argument("--workers", type=int, default=1, help="heads solved at once in the methods part")
    parser.add_argument("--per-class", default="10,25,50,0", help="photo counts a class of the photos part (0: all)")
    parser.add_argument("--photo-splits", type=int, default=5, help="splits of the photos part")
    parser.add_argument("--photos", type=int, default=96, help="photos prepared per choice to time preparation")
    args = parser.parse_args()
    choices = args.choices.split(",")
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the start")
    if "accuracy" in args.parts:
        accuracy(args.sets.split(","), choices)
    if "methods" in args.parts:
        methods(args.sets.split(","), choices, args.method_splits, args.workers)
    if "unseen" in args.parts:
        unseen(args.sets.split(","), args.cost_choices.split(","))
    if "preparation" in args.parts:
        preparation(args.sets.split(","), args.cost_choices.split(","), args.photos)
    if "speed" in args.parts:
        speed(args.cost_choices.split(","), args.rounds)
    if "photos" in args.parts:
        photos(args.sets.split(","), args.cost_choices.split(","), [int(n) for n in args.per_class.split(",")],
               args.photo_splits)
    if "pixels" in args.parts:
        pixels(args.sets.split(","), [c for c in args.choices.split(",") if "+" in c], args.method_splits)
    if "costs" in args.parts:
        costs(args.sets.split(","), args.cost_choices.split(","))


if __name__ == "__main__":
    main()
