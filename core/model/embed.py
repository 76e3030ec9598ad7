"""Frozen-backbone embeddings, computed once per photo and backbone and cached.

The backbone is converted once to a LiteRT flatbuffer and run with XNNPACK, about 4x faster
on a laptop CPU than `model.predict`; decoding runs in a thread pool beside it. The cache is
keyed by the photo's content hash, so re-training or adding a class embeds only what is new.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from core import config
from core.model.backbones import BackboneSpec
from core.files import atomic_write
from core.images import load_rgb_sizes

CONVERSION_VERSION = 4  # bump when the backbone graph or preprocessing changes: old caches become stale
BATCH = 16

Progress = Callable[[int, int], None]


def cache_key(spec: BackboneSpec) -> str:
    """`name@size` + the conversion version; a smaller member of a joined backbone, which reads the joined size and
    resizes it in its graph (`core.model.joined.ResizedMember`), names both sizes: its vectors are not the member's."""
    return f"{getattr(spec, 'cache_name', None) or f'{spec.name}@{spec.input_size}'}v{CONVERSION_VERSION}"


def pooled_features(spec: BackboneSpec):
    """(pixels input, pooled output) tensors of the pretrained backbone, BatchNorm in inference mode:
    the trunk that the embedding model and the classifier share."""
    import keras

    inputs = keras.Input((spec.input_size, spec.input_size, 3), name="pixels")
    backbone = spec.build()
    pooled = keras.layers.GlobalAveragePooling2D(name="pooled")(backbone(inputs, training=False))
    return inputs, pooled


def feature_model(spec: BackboneSpec):
    """Backbone + global average pooling: raw pixels in, one vector per photo out."""
    import keras

    return keras.Model(*pooled_features(spec), name=f"{spec.name}_features")


def tflite_bytes(model, input_size: int, *, quantize: bool = False) -> bytes:
    """Convert a Keras model taking (batch, S, S, 3) pixels to a LiteRT flatbuffer, checked to run."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # dynamic-range: int8 weights, float activations
    with contextlib.redirect_stdout(io.StringIO()):  # Keras prints the whole exported signature otherwise
        flatbuffer = converter.convert()
    probe = np.random.default_rng(0).uniform(0, 255, (1, input_size, input_size, 3)).astype(np.float32)
    if not np.isfinite(LiteRTRunner(flatbuffer)(probe)).all():
        raise RuntimeError("The LiteRT conversion produced a model with non-finite outputs.")
    return flatbuffer


# Held while a Keras model is built and converted; the worker takes it too before it clears Keras's global state
# (`core.jobs.worker.give_memory_back`), so that never happens in the middle of a conversion on another thread.
CONVERSION_LOCK = threading.Lock()


def litert_backbone(spec: BackboneSpec) -> Path:
    """Path of the backbone's cached LiteRT file, converting it on first use."""
    return litert_file(cache_key(spec), spec.input_size, lambda: feature_model(spec))


def litert_ready(spec: BackboneSpec) -> bool:
    """Whether every part of the backbone is converted already, so embedding with it needs no Keras."""
    return all(litert_path(cache_key(part)).exists() for part in spec.parts)


def ready_backbone(spec: BackboneSpec) -> None:
    """Convert every part of the backbone that is not converted yet."""
    for part in spec.parts:
        litert_backbone(part)


def litert_path(key: str) -> Path:
    """Where the cached LiteRT file named `key` is (it may not be there yet)."""
    return config.cache_dir() / "backbones" / f"{key}.tflite"


def litert_file(key: str, input_size: int, build: Callable[[], object]) -> Path:
    """Path of a cached LiteRT file named `key`, converted from the Keras model `build()` makes on first use."""
    path = litert_path(key)
    with CONVERSION_LOCK:
        if not path.exists():
            atomic_write(path, tflite_bytes(build(), input_size))
    return path


class LiteRTRunner:
    """Batched inference of a LiteRT model on float pixels, resizing the batch dimension as needed."""

    def __init__(self, model: Path | bytes, threads: int | None = None, n_classes: int | None = None):
        """With `n_classes`, a run's model: checked against the run-folder contract before anything is allocated,
        and its probabilities output is the one returned."""
        from ai_edge_litert.interpreter import Interpreter

        kwargs = {"model_path": str(model)} if isinstance(model, Path) else {"model_content": model}
        self._interpreter = Interpreter(**kwargs, num_threads=threads or os.cpu_count() or 1)
        details = self._interpreter.get_input_details()[0]
        self._input = details["index"]
        self.input_size = int(details["shape"][1])  # (batch, S, S, 3)
        details = self._interpreter.get_output_details()
        output = next((i for i, d in enumerate(details) if len(d["shape"]) != 1), 0)  # not the novelty score
        if n_classes is not None:
            from core.store.run_folder import check_tflite

            output = check_tflite(self._interpreter, n_classes)
            self._interpreter.allocate_tensors()  # sizes checked: a broken graph fails here, at load, not mid-page
        self._output = details[output]["index"]
        # A run's model may have a second output, the (N,) novelty score (core.model.novelty); told apart by rank.
        self.novelty_output = next((d["index"] for d in details if len(d["shape"]) == 1), None)
        self._batch = 0

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """The model's output (a run's model: its probabilities)."""
        return self.outputs(pixels)[0]

    def outputs(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The output and, for a run's model that has one, its `novelty` output."""
        self._invoke(pixels)
        novelty = None if self.novelty_output is None else self._interpreter.get_tensor(self.novelty_output).copy()
        return self._interpreter.get_tensor(self._output).copy(), novelty

    def all_outputs(self, pixels: np.ndarray) -> list[np.ndarray]:
        """Every output, in the file's order (a heat map file: its probabilities and class maps)."""
        self._invoke(pixels)
        return [self._interpreter.get_tensor(d["index"]).copy() for d in self._interpreter.get_output_details()]

    def _invoke(self, pixels: np.ndarray) -> None:
        if pixels.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input, pixels.shape)
            self._interpreter.allocate_tensors()
            self._batch = pixels.shape[0]
        self._interpreter.set_tensor(self._input, pixels.astype(np.float32, copy=False))
        self._interpreter.invoke()


_runners = threading.local()


def _runner(path: Path, threads: int | None) -> LiteRTRunner:
    """This thread's interpreter for a model file, kept: a new one costs a few hundred ms before its first answer
    (an interpreter must not be shared between threads)."""
    kept = _runners.__dict__.setdefault("by_key", {})
    if (path, threads) not in kept:
        kept[(path, threads)] = LiteRTRunner(path, threads)
    return kept[(path, threads)]


def on_gpu() -> bool:
    """Whether TensorFlow, once this process has loaded it (the worker and training do), sees a GPU: then Keras runs
    the backbones there, many times faster than LiteRT on the CPU. Never loads TensorFlow itself: the app's server
    stays light."""
    tf = sys.modules.get("tensorflow")
    return tf is not None and bool(tf.config.list_physical_devices("GPU"))


def keras_runner(model) -> Callable[[np.ndarray], np.ndarray]:
    """A Keras model as a pixels -> array function (on the GPU when TensorFlow has one)."""
    return lambda pixels: model.predict(pixels, verbose=0, batch_size=BATCH)


def make_embedder(spec: BackboneSpec, engine: str = "litert",
                  threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a pixel batch to embeddings: LiteRT on the CPU when installed, else Keras; Keras on a GPU
    whenever TensorFlow sees one."""
    if engine == "litert" and not on_gpu():
        try:
            return _runner(litert_backbone(spec), threads)
        except ImportError:
            pass
    return keras_runner(feature_model(spec))


class EmbeddingCache:
    """SQLite table of vectors keyed by (backbone key, photo sha256); safe across threads and processes.

    `dtype` is how vectors are stored: float32 for embeddings, float16 for the larger freeze-boundary
    activations (core.model.activations), whose rounding is far below what fine-tuning notices.
    """

    def __init__(self, path: Path | None = None, dtype: type = np.float32):
        self.path = path or config.cache_dir() / "embeddings.sqlite"
        self.dtype = np.dtype(dtype)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as con, con:
            con.execute("CREATE TABLE IF NOT EXISTS embeddings (key TEXT, sha256 TEXT, vector BLOB, "
                        "PRIMARY KEY (key, sha256))")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def get(self, key: str, shas: Sequence[str]) -> dict[str, np.ndarray]:
        """The vectors found, as read-only rows of one array (see `table`)."""
        table, found = self.table(key, shas)
        if table is None:
            return {}
        table.flags.writeable = False
        return {shas[i]: table[i] for i in np.flatnonzero(found)}

    def table(self, key: str, shas: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """(vectors, found): one array with a row per asked photo in their order, filled where `found` (None when none
        is). One array, not a small object per photo: those kept 250 MB of heap that the process never gave back
        after reading 50,000 photos (issue 23); rows never filled are never touched, so they take no memory."""
        rows: dict[str, list[int]] = {}
        for i, sha in enumerate(shas):  # the same photo may be asked for twice (a copy in another class)
            rows.setdefault(sha, []).append(i)
        table, found = None, np.zeros(len(shas), bool)
        for sha, blob in self._rows("sha256, vector", key, list(rows)):
            vector = np.frombuffer(blob, dtype=self.dtype)
            if table is None:
                table = np.empty((len(shas), len(vector)), self.dtype)
            table[rows[sha]] = vector
            found[rows[sha]] = True
        return table, found

    def has(self, key: str, shas: Sequence[str]) -> set[str]:
        """Which of these photos have a vector under `key`, read from the primary-key index alone: no vector bytes
        (the pages ask every 2 s how many photos are ready to train)."""
        return {sha for (sha,) in self._rows("sha256", key, shas)}

    def _rows(self, columns: str, key: str, shas: Sequence[str]) -> Iterator[tuple]:
        with closing(self._connect()) as con:
            for start in range(0, len(shas), 500):
                chunk = list(shas[start:start + 500])
                marks = ",".join("?" * len(chunk))
                yield from con.execute(f"SELECT {columns} FROM embeddings WHERE key=? AND sha256 IN ({marks})",
                                       [key, *chunk])

    def put(self, key: str, vectors: dict[str, np.ndarray]) -> None:
        with closing(self._connect()) as con, con:
            con.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                            [(key, sha, v.astype(self.dtype).tobytes()) for sha, v in vectors.items()])


@dataclass
class EmbedResult:
    vectors: np.ndarray          # (n_ok, dim), in the order of `ok`
    ok: list[int]                # indices into the input that were embedded
    failed: dict[int, str]       # index -> why the photo could not be read
    computed: int                # how many were not in the cache
    seconds: float               # wall time spent computing (0 when all cached)

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds else 0.0


def embed_files(paths: Sequence[Path], shas: Sequence[str], spec: BackboneSpec, *,
                cache: EmbeddingCache | None = None, engine: str = "litert", flip: bool = False,
                on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                decode_threads: int | None = None) -> EmbedResult:
    """Embeddings for photos on disk (mirrored with flip=True), from the cache where possible;
    unreadable photos are reported, not fatal. Decoding memory is bounded by core.images' shared
    budget however many `decode_threads` (default: one per core) there are."""
    return embed_views(paths, shas, spec, (flip,), cache=cache, engine=engine, on_progress=on_progress,
                       should_stop=should_stop, decode_threads=decode_threads)[0]


def embed_views(paths: Sequence[Path], shas: Sequence[str], spec: BackboneSpec, views: Sequence[bool] = (False, True),
                *, cache: EmbeddingCache | None = None, engine: str = "litert", on_progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None, threads: int | None = None,
                decode_threads: int | None = None) -> list[EmbedResult]:
    """One EmbedResult per view (False: as is, True: mirrored); a photo missing from any view's cache is
    decoded once for all of them. A joined backbone's vectors (`core.model.joined`) are its members' side by
    side, each made from the same photo at the joined size (the smaller members resize it in their graph, as the
    downloads do) and cached under its part's own key.
    `threads` caps the backbone's threads and, unless `decode_threads` says otherwise, the decoding
    threads (default: every core)."""
    groups = [Group(part.input_size, {view_key(part, flip): mirrored if flip else as_is for flip in views},
                    functools.partial(make_embedder, part, engine, threads)) for part in spec.parts]
    per_part = cached_groups(paths, shas, groups, cache or EmbeddingCache(), on_progress=on_progress,
                             should_stop=should_stop, threads=threads, decode_threads=decode_threads)
    return [side_by_side([results[v] for results in per_part]) for v in range(len(views))]


View = Callable[[np.ndarray], np.ndarray]  # a pixel batch -> the same photos seen another way


def as_is(pixels: np.ndarray) -> np.ndarray:
    return pixels


def mirrored(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels[:, :, ::-1])


@dataclass(frozen=True)
class Group:
    """One model's share of a pass over the photos: the side it reads photos at, its views ({cache key: View})
    and how to make it (only when some photo is missing from its cache)."""

    size: int
    views: dict[str, View]
    make_runner: Callable[[], Callable[[np.ndarray], np.ndarray]]


def cached_views(paths: Sequence[Path], shas: Sequence[str], size: int, views: dict[str, View],
                 make_runner: Callable[[], Callable[[np.ndarray], np.ndarray]], cache: EmbeddingCache, *,
                 on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                 threads: int | None = None, decode_threads: int | None = None) -> list[EmbedResult]:
    """Flattened outputs of a pixels -> array model for each view ({cache key: View}), from `cache` where
    possible; the model is made only when some photo is missing, and each missing photo is decoded once."""
    return cached_groups(paths, shas, [Group(size, views, make_runner)], cache, on_progress=on_progress,
                         should_stop=should_stop, threads=threads, decode_threads=decode_threads)[0]


def cached_groups(paths: Sequence[Path], shas: Sequence[str], groups: Sequence[Group], cache: EmbeddingCache, *,
                  on_progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                  threads: int | None = None, decode_threads: int | None = None) -> list[list[EmbedResult]]:
    """`cached_views` for several models at once (per group, one result per view): a photo missing from any of
    their caches is decoded once and resized for each group that lacks it; a group's model runs only on those."""
    tables = [[_Table(*cache.table(key, shas)) for key in group.views] for group in groups]
    todo = np.flatnonzero(~np.logical_and.reduce([t.found for views in tables for t in views])).tolist()
    runners: list = [None] * len(groups)
    failed: dict[int, str] = {}
    start = time.perf_counter()
    if todo:
        done = len(shas) - len(todo)
        sizes = [group.size for group in groups]
        for batch_ids, pixels, errors in _decoded_batches(paths, todo, sizes, decode_threads or threads):
            if should_stop and should_stop():
                raise InterruptedError("stopped while embedding")
            failed.update(errors)
            for g, group in enumerate(groups):
                rows = [r for r, i in enumerate(batch_ids) if not all(t.found[i] for t in tables[g])]
                if not rows:
                    continue
                runners[g] = runners[g] or group.make_runner()
                ids = [batch_ids[r] for r in rows]
                for (key, view), table in zip(group.views.items(), tables[g]):
                    # Stored precision from the start: a photo gives the same numbers computed or read back.
                    fresh = runners[g](view(pixels[g][rows])).reshape(len(rows), -1).astype(cache.dtype)
                    table.fill(ids, fresh)
                    cache.put(key, {shas[i]: v for i, v in zip(ids, fresh)})
            done += len(batch_ids) + len(errors)
            if on_progress:
                on_progress(done, len(shas))
    elif on_progress:
        on_progress(len(shas), len(shas))
    seconds = time.perf_counter() - start if todo else 0.0
    return [[table.result(failed, len(todo) - len(failed), seconds) for table in views] for views in tables]


@dataclass
class _Table:
    """One view's vectors of the asked photos, a row each in their order: read from the cache, then computed."""

    vectors: np.ndarray | None
    found: np.ndarray  # (n,) bool

    def fill(self, ids: list[int], rows: np.ndarray) -> None:
        if self.vectors is None:
            self.vectors = np.empty((len(self.found), rows.shape[1]), rows.dtype)
        self.vectors[ids] = rows
        self.found[ids] = True

    def result(self, failed: dict[int, str], computed: int, seconds: float) -> EmbedResult:
        """The rows found, with no copy when every photo was (at 50,000 photos a copy is 250 MB a view)."""
        ok = np.flatnonzero(self.found)
        if self.vectors is None or not len(ok):
            return EmbedResult(np.zeros((0, 0), np.float32), [], failed, computed, seconds)
        return EmbedResult(self.vectors if len(ok) == len(self.found) else self.vectors[ok], ok.tolist(), failed,
                           computed, seconds)


def side_by_side(results: Sequence[EmbedResult]) -> EmbedResult:
    """The members' results of one view as one: each photo's vectors concatenated in member order, for the photos
    every member has."""
    if len(results) == 1:
        return results[0]
    ok = sorted(set.intersection(*(set(r.ok) for r in results)))
    rows = [{i: row for row, i in enumerate(r.ok)} for r in results]
    vectors = (np.concatenate([r.vectors[[index[i] for i in ok]] for r, index in zip(results, rows)], axis=1)
               if ok else np.zeros((0, 0), np.float32))
    failed = {i: why for r in results for i, why in r.failed.items() if i not in ok}
    return EmbedResult(vectors, ok, failed, max(r.computed for r in results), max(r.seconds for r in results))


def view_key(spec: BackboneSpec, flip: bool) -> str:
    """Cache key of a backbone's embeddings of photos as they are or mirrored."""
    return cache_key(spec) + ("-flip" if flip else "")


def _decoded_batches(paths: Sequence[Path], ids: list[int], sizes: Sequence[int], threads: int | None = None):
    """Yield (ids, [pixel batch per size], {id: error}), each photo decoded once for every size, with decoding of
    the next batches running in threads."""

    def load(i: int):
        try:
            return i, load_rgb_sizes(Path(paths[i]), sizes), None
        except Exception as exc:  # any unreadable file is reported per photo, never fatal for the run
            return i, None, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=threads or max(2, (os.cpu_count() or 2))) as pool:
        chunks = [ids[s:s + BATCH] for s in range(0, len(ids), BATCH)]
        futures = [[pool.submit(load, i) for i in chunk] for chunk in chunks[:2]]
        for n in range(len(chunks)):
            if n + 2 < len(chunks):
                futures.append([pool.submit(load, i) for i in chunks[n + 2]])
            results = [f.result() for f in futures[n]]
            good = [(i, px) for i, px, err in results if err is None]
            errors = {i: err for i, _, err in results if err is not None}
            pixels = [np.stack([px[k] for _, px in good]).astype(np.float32) if good
                      else np.zeros((0, size, size, 3), np.float32) for k, size in enumerate(sizes)]
            yield [i for i, _ in good], pixels, errors
