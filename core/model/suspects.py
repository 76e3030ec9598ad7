"""Photos that are probably in the wrong class or off-topic, most suspicious first.

Each kept photo is embedded once by the frozen backbone (cached). Two signals are combined:
how likely a quick classifier that never saw the photo thinks its label is (k-fold, so every
photo is judged by a model trained on the others), and how far the photo lies from its class
centre, compared with the rest of that class. A mislabeled photo fails the first; an odd one
(a logo, a drawing, a photo of the wrong thing in every class) tends to fail the second. A third
signal is the novelty score of `core.model.novelty` within the class: the distance to the photo's k-th
nearest class-mate. The ranking takes each photo at its worse rank of the two (label/centre, or
unlike its class-mates), so off-topic web-search photos come up beside mislabeled ones: in
bench/bench_suspects.py, photos of other sets dropped into classes ranked 9-14th at the median
against 25-144th before.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from core.jobs import turns
from core.jobs.background import Busy, Cancelled, Registry, Task, project_key
from core.jobs.server import WORKER
from core.model.backbones import DEFAULT_BACKBONE, BackboneSpec, BackboneUnavailable, get_backbone
from core.model.head import coordinates, out_of_fold, stratified_folds
from core.model.novelty import K as NOVELTY_K, unit
from core.store.project import Project

if TYPE_CHECKING:  # core.model.embed pulls in the backbones; only the ranking itself needs them
    from core.model.embed import EmbeddingCache

MIN_PHOTOS_PER_CLASS = 3  # below this a class cannot be learned from the other folds
FOLDS = 5
LABEL_WEIGHT = 0.75  # share of the score from the classifier; the rest from the distance to the class centre
REGULARIZATION = 1e-3  # per photo: the classifier's C is 1 / (this x the number of photos it learns from)
# A move is advised only when the other class is at least MOVE_LEVEL likely AND MOVE_MARGIN more likely than the
# photo's own class: with two classes that is 75 % or more (53 % is a coin toss); with many, 60 % against at most 10 %.
MOVE_LEVEL = 0.6
MOVE_MARGIN = 0.5
# ...and when the photos most like it agree: of its NEIGHBOURS nearest photos, at least MOVE_NEIGHBOURS are in that
# class and at most OWN_NEIGHBOURS in its own. The classifier alone was sure of a wrong class for product photos that
# look alike (groceries: 19 advised moves of correctly labelled photos against 10 right ones, with labels flipped at
# random in 5 % of the photos; with the neighbours 3 against 6; flowers5 15 against 53 -> 10 against 47; hymenoptera
# 9 against 40 -> 5 against 34; 25 grocery classes 0 against 7 either way). Weaker evidence gets a question, not advice.
NEIGHBOURS = 10
MOVE_NEIGHBOURS = 7
OWN_NEIGHBOURS = 1
NOTE = "suspects"
CENTRING_ROWS = 1024  # rows worked in float64 at a time (10 MB at 1,280 dimensions)
READYING = "Getting the pretrained network ready (the first time takes about half a minute)…"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Suspect:
    image_id: int
    class_name: str            # the class the photo is labelled with
    score: float               # 0..1, higher is more suspicious
    label_probability: float   # what a classifier that never saw the photo gives its own class
    predicted_class: str       # that classifier's best guess
    predicted_probability: float
    centre_distance: float     # cosine distance to the class centre, z-scored within the class
    unlike_class: float = 0.0  # novelty within the class: 1 - cosine to its k-th nearest class-mate
    # of its NEIGHBOURS most similar photos, how many are labelled `predicted_class`, and how many `class_name`
    # (counted where the classifier names another class; rankings kept before this was counted read as agreeing)
    neighbours_like: int = NEIGHBOURS
    neighbours_own: int = 0

    @property
    def clearly_elsewhere(self) -> bool:
        """Whether the evidence is strong enough to advise moving the photo to `predicted_class`: the classifier
        that never saw it is sure, and the photos most like it are mostly in that class, hardly any in its own."""
        return (self.predicted_class != self.class_name and self.predicted_probability >= MOVE_LEVEL
                and self.predicted_probability - self.label_probability >= MOVE_MARGIN
                and self.neighbours_like >= MOVE_NEIGHBOURS and self.neighbours_own <= OWN_NEIGHBOURS)


@dataclass(frozen=True)
class SavedRanking:
    """A ranking kept in the project, and the kept photos it looked at (new ones call for a fresh check)."""

    items: list[Suspect]
    photo_ids: set[int]


def remember(project: Project, ranking: list[Suspect], photo_ids: set[int]) -> None:
    """Keep a ranking in the project, so a refresh, another tab or a later visit shows it again."""
    project.put_note(NOTE, json.dumps({"items": [asdict(s) for s in ranking], "photo_ids": sorted(photo_ids)}))


def remembered(project: Project) -> SavedRanking | None:
    """The ranking kept by `remember`, or None when there is none (or it cannot be read)."""
    try:
        data = json.loads(project.note(NOTE) or "null")
        return SavedRanking([Suspect(**item) for item in data["items"]], set(data["photo_ids"])) if data else None
    except (ValueError, TypeError, KeyError):
        return None


# ---- the check as a background task: the page starts it and polls it; the ranking lands in the project ----

_checks: Registry[Task] = Registry(lambda: Busy("The photos are being checked already: the ranking appears "
                                                "here when that check is done."))


def start_check(project: Project) -> Task:
    """Rank the project's photos on a background thread and keep the ranking (`remembered`); Busy if one runs."""
    return _checks.start(project_key(project), lambda: Task(
        f"suspects {project.name}", lambda task: _check(project, task), what="The check", text=READYING,
        expected=(ValueError, BackboneUnavailable)))


def current_check(project: Project) -> Task | None:
    """The project's running check, or its last finished one until `forget_check`."""
    return _checks.current(project_key(project))


def forget_check(project: Project) -> None:
    _checks.forget(project_key(project))


def _check(project: Project, task: Task) -> int:
    """The task's work: rank, keep the ranking; returns how many photos were ranked."""
    photo_ids = {r.id for r in project.images(status="kept")}  # photos added meanwhile call for another check

    def progress(done: int, total: int) -> None:
        task.report(done, total, f"Looking at photo {done:,} of {total:,} (only new photos take time)…"
                    if done < total else f"All {total:,} photos looked at; now comparing each with the others. With "
                    "tens of thousands of photos this part takes a minute or two…")  # no steps to count in it

    def waiting() -> None:
        task.report(0, 0, "Waiting for the training process to finish what it is doing (training, or making a run's "
                          "downloads): with this many photos the two at once could pass 2 GB of memory…")

    stop = lambda: task.cancel_requested  # noqa: E731
    try:
        _ready_in_worker(get_backbone(DEFAULT_BACKBONE), stop)  # before the turn: the worker converts it in its own
        big = len(photo_ids) >= turns.BIG_PROJECT
        with turns.turn(alone=True, should_stop=stop, on_wait=waiting) if big else contextlib.nullcontext():
            ranking = rank_suspects(project, on_progress=progress, should_stop=stop)
    except InterruptedError:
        raise Cancelled from None
    task.check()
    remember(project, ranking, photo_ids)
    return len(ranking)


def _ready_in_worker(spec: BackboneSpec, should_stop: Callable[[], bool]) -> None:
    """Have the worker convert the backbone if it is not converted yet. The check runs in the app's server, where
    Streamlit clears Keras's state after every page run (the progress bar's too): a conversion there never
    finished (docs/scale.md, "The suspects check in a server")."""
    from core.model.embed import litert_ready

    if not litert_ready(spec):
        if error := WORKER.ask("backbone", should_stop, backbone=spec.name).get("error"):
            raise RuntimeError(f"The pretrained network could not be made ready: {error}")


@dataclass(frozen=True)
class Scores:
    """Per-photo signals, in the order of the input vectors."""

    label_probability: np.ndarray
    predicted: np.ndarray
    predicted_probability: np.ndarray
    centre_distance: np.ndarray
    unlike_class: np.ndarray
    score: np.ndarray
    neighbours_like: np.ndarray  # of its NEIGHBOURS nearest photos: how many have the predicted label...
    neighbours_own: np.ndarray   # ...and how many its own (counted only where the two differ)


def too_small(counts: dict[str, int]) -> list[str]:
    """Classes with photos, but too few to judge; they are left out of the ranking."""
    return sorted(name for name, n in counts.items() if 0 < n < MIN_PHOTOS_PER_CLASS)


def rank_suspects(project: Project, *, backbone: str | None = None, on_progress: Progress | None = None,
                  cache: EmbeddingCache | None = None, should_stop: Callable[[], bool] | None = None) -> list[Suspect]:
    """Every kept photo of the classes with enough photos, most suspicious first.

    `backbone` defaults to `core.model.backbones.DEFAULT_BACKBONE`; embeddings come from the shared cache.
    Raises ValueError (a sentence for the user) when fewer than two classes can be judged, InterruptedError
    when `should_stop` said so while photos were being embedded.
    """
    from core.model.embed import embed_files

    records = project.images(status="kept")
    usable = _usable_classes([r.class_name for r in records])
    records = [r for r in records if r.class_name in usable]
    result = embed_files([r.path for r in records], [r.sha256 for r in records],
                         get_backbone(backbone or DEFAULT_BACKBONE), cache=cache, on_progress=on_progress,
                         should_stop=should_stop)
    records = [records[i] for i in result.ok]
    vectors = result.vectors
    del result  # the check runs in the app's server: nothing held twice (issue 23: 2.1 GB at 50,000 photos)
    names = [r.class_name for r in records]
    usable = _usable_classes(names)
    keep = [i for i, name in enumerate(names) if name in usable]
    class_names = sorted(usable)
    index = {name: i for i, name in enumerate(class_names)}
    labels = np.array([index[names[i]] for i in keep])
    # the check may work in the vectors' own memory: nothing here needs them after (issue 23: the server's peak)
    scores = score_embeddings(vectors if len(keep) == len(vectors) else vectors[keep], labels, overwrite=True)
    del vectors
    suspects = [
        Suspect(records[i].id, records[i].class_name, float(scores.score[j]), float(scores.label_probability[j]),
                class_names[scores.predicted[j]], float(scores.predicted_probability[j]),
                float(scores.centre_distance[j]), float(scores.unlike_class[j]), int(scores.neighbours_like[j]),
                int(scores.neighbours_own[j]))
        for j, i in enumerate(keep)
    ]
    return sorted(suspects, key=lambda s: s.score, reverse=True)


def _usable_classes(names: list[str]) -> set[str]:
    """Classes with enough photos to judge, or ValueError when fewer than two have."""
    counts = Counter(names)
    usable = {name for name, n in counts.items() if n >= MIN_PHOTOS_PER_CLASS}
    if len(usable) < 2:
        raise ValueError(f"Finding suspects needs at least two classes with {MIN_PHOTOS_PER_CLASS} or more kept "
                         f"photos each; this project has {len(usable)}. Add photos first.")
    return usable


def score_embeddings(vectors: np.ndarray, labels: np.ndarray, *, folds: int = FOLDS, seed: int = 0,
                     overwrite: bool = False) -> Scores:
    """Out-of-fold label probabilities and within-class centre distances, combined; then each photo at the worse of
    that rank and its rank by novelty among its class-mates (the score: the share of photos ranked below it).
    With `overwrite`, float32 `vectors` are used as the working copy (their values are lost): the check runs in the
    app's server, and at 50,000 photos each copy is 256 MB."""
    unlike = unlike_class(vectors, labels)
    x = _centred_unit(vectors, overwrite)
    # The whole embedding (rotated onto the span of the vectors when there are fewer than dimensions: lossless),
    # every fold solved at once.
    basis = coordinates(x).directions
    probs = out_of_fold(x if basis is None else x @ basis, labels, int(labels.max()) + 1,
                        stratified_folds(labels, np.arange(len(labels)), folds, seed),
                        lambda rows: 1 / (REGULARIZATION * rows), in_place=True)  # x is this function's own
    label_probability = probs[np.arange(len(x)), labels]
    distance = centre_distances(x, labels)
    mislabeled = LABEL_WEIGHT * (1 - label_probability) + (1 - LABEL_WEIGHT) / (1 + np.exp(-distance))
    score = np.maximum(_rank_share(mislabeled), _rank_share(unlike))
    predicted = probs.argmax(axis=1)
    like, own = neighbour_votes(x, labels, predicted)
    return Scores(label_probability, predicted, probs.max(axis=1), distance, unlike, score, like, own)


def neighbour_votes(x: np.ndarray, labels: np.ndarray, predicted: np.ndarray,
                    k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
    """For each photo the classifier puts in another class: how many of its k most similar photos (cosine, `x`
    normalised) carry that class's label, and how many its own; 0 and k elsewhere (nothing to move)."""
    k = min(k, len(x) - 1)
    like, own = np.zeros(len(x), dtype=int), np.full(len(x), k)
    rows = np.flatnonzero(predicted != labels)
    for start in range(0, len(rows), 64):  # a block of rows at a time: memory stays small for big projects
        chunk = rows[start:start + 64]
        unlikeness = x[chunk] @ x.T
        np.negative(unlikeness, out=unlikeness)  # in place: at 50,000 photos each copy is 13 MB
        unlikeness[np.arange(len(chunk)), chunk] = np.inf  # not itself
        nearest = labels[np.argpartition(unlikeness, k - 1, axis=1)[:, :k]]
        like[chunk] = (nearest == predicted[chunk, None]).sum(axis=1)
        own[chunk] = (nearest == labels[chunk, None]).sum(axis=1)
    return like, own


def unlike_class(vectors: np.ndarray, labels: np.ndarray, k: int = NOVELTY_K) -> np.ndarray:
    """The novelty score of each photo against the rest of its class: 1 - cosine to its k-th nearest class-mate
    (a few rows at a time: a class of 25,000 photos never needs its whole similarity matrix, and one class's unit
    vectors are made at a time, not a copy of all of them)."""
    out = np.zeros(len(vectors))
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        nth = min(k, len(members) - 1)
        if nth < 1:
            continue
        mates = unit(vectors[members])
        for start in range(0, len(members), 1024):
            rows = members[start:start + 1024]
            similarity = mates[start:start + 1024] @ mates.T
            similarity[np.arange(len(rows)), start + np.arange(len(rows))] = -np.inf  # not its own neighbour
            out[rows] = 1 - np.partition(similarity, len(members) - nth, axis=1)[:, len(members) - nth]
    return out


def _rank_share(values: np.ndarray) -> np.ndarray:
    """Each value's share of the values below it, 0 .. (n-1)/n (ties in input order)."""
    return np.argsort(np.argsort(values, kind="stable"), kind="stable") / max(len(values), 1)


def centre_distances(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cosine distance of each vector (`x` normalised) to its class centre, as a z-score within the class."""
    z = np.zeros(len(x))
    for label in np.unique(labels):
        members = labels == label
        rows = x[members]
        centre = _normalize(rows.mean(axis=0, keepdims=True, dtype=np.float64))[0]
        distance = 1 - (rows @ centre.astype(rows.dtype)).astype(np.float64)  # one type: the fast BLAS path
        z[members] = (distance - distance.mean()) / (distance.std() + 1e-9)
    return z


def _centred_unit(vectors: np.ndarray, overwrite: bool = False) -> np.ndarray:
    """The vectors centred (CNN features are all positive) and scaled to length 1, in float32 (the solver's type):
    each row worked out in float64 and rounded once, a block at a time, into a new array or (`overwrite`, float32
    vectors) into `vectors` itself."""
    vectors = np.asarray(vectors)
    mean = vectors.mean(axis=0, dtype=np.float64)
    out = vectors if overwrite and vectors.dtype == np.float32 else np.empty(vectors.shape, np.float32)
    for start in range(0, len(vectors), CENTRING_ROWS):
        block = vectors[start:start + CENTRING_ROWS].astype(np.float64)
        block -= mean
        block /= np.sqrt(np.einsum("ij,ij->i", block, block))[:, None] + 1e-12
        out[start:start + CENTRING_ROWS] = block
    return out


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)
