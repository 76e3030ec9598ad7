"""What a run folder holds, and reading it back checked: the one contract every loader of a run keeps.

A run folder (`runs/run-NNNN/`) is written by the app, but it is a folder on the user's disk: it
can be cut short, edited, swapped for another run's files or forged. Every path that loads one
(Try it, the webcam, Results, the heat map, the CLI's `predict` and `evaluate`) reads it through
this module, which checks sizes before reading, array headers before arrays, shapes and dtypes
against the labels and the backbone, and that the numbers are finite. Anything that does not
hold raises `RunFolderInvalid`, one typed error whose message is a sentence for the user.

The written form of this contract is docs/run-folder.md; keep both in step. To add a file, add
a `RunFile` to `FILES` (and its reader here); to add a model output, add it to `OUTPUTS`.
"""

from __future__ import annotations

import json
import math
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from core.store.names import validate_name

MB = 1 << 20
MAX_CLASSES = 1000
MAX_FEATURE_DIM = 16384  # a joined backbone's embedding is its members' dims added up: Lite0+1+2 is 3,840
MAX_INPUT_SIZE = 1024  # pixels per side a model may ask for
MAX_TENSOR_BYTES = 2048 * MB  # all of a LiteRT model's tensors for one photo, before any is allocated


class RunFolderInvalid(ValueError):
    """A run folder's file is missing, damaged or not one this app wrote; the message is meant for the user."""


class NotConverted(FileNotFoundError):
    """The LiteRT file a page needs (for a heat map, or a fine-tuned run's predictions) is still being made by the
    worker (`core.serving.heatmap`)."""


@contextmanager
def loading(run_dir: Path | None = None):
    """Whatever goes wrong reading a run folder (or, without one, running its model) becomes RunFolderInvalid:
    a forged or damaged file can make a parser raise nearly anything, and the pages catch this one error."""
    try:
        yield
    except (RunFolderInvalid, NotConverted):  # not converted yet: the page waits for the worker
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError, MemoryError) as exc:
        what = f"The model in {Path(run_dir).name} cannot be loaded" if run_dir else "This run's model failed to run"
        raise RunFolderInvalid(f"{what} ({type(exc).__name__}: {str(exc)[:200]}).") from exc


@dataclass(frozen=True)
class RunFile:
    name: str
    holds: str  # what the file holds, as docs/run-folder.md says it
    max_bytes: int


FILES = {f.name: f for f in (
    RunFile("labels.txt", "class names, one per line in the model's output order (UTF-8, app name rules)", 1 * MB),
    RunFile("head.npz", "head-only runs: `kernel` (D, C) and `bias` (C,), finite floats, on the raw embedding; "
                        "D = the backbone's embedding size (a joined backbone: its members' sizes added up)", 256 * MB),
    RunFile("metrics.json", "a JSON object; `backbone` names the backbone; `test_time_mirror` (a bool) whether the "
                            "model averages each photo with its mirror image, `test_time_zoom` (a bool) with its "
                            "zoomed-in views too (written last: the run is usable)", 16 * MB),
    RunFile("evaluation.json", "a JSON object: `n`, `accuracy`, `class_names`, `per_class`, `confusion`, "
                               "`misclassified`", 256 * MB),
    RunFile("novelty.npz", "runs with a novelty check: `reference` (R, D) float16, the training photos' embeddings "
                           "(a fine-tuned run: its tuned pooled features) and their mirror images' scaled to length 1, at most 24 MB of them", 32 * MB),
    RunFile("novelty.json", "with novelty.npz: `k`, `threshold` (in force; a photo scoring above it is not one of "
                            "the classes), `suggested`, `val_scores`, `left_out_scores`, `hidden_scores` "
                            "(core.model.novelty)", 16 * MB),
    RunFile("model.keras", "the whole model: raw RGB pixels (N, S, S, 3) in, the outputs of OUTPUTS out", 1024 * MB),
    RunFile("model.tflite", "the same model for LiteRT, float32", 1024 * MB),
    RunFile("model_quant.tflite", "the same model for LiteRT, int8 weights", 1024 * MB),
    RunFile("photos.json", "`train` and `val`: [path, class index, sha256] of each photo the run used", 256 * MB),
    RunFile("model_int8.tflite", "on request: full-integer LiteRT model, uint8 pixels in, uint8 outputs", 1024 * MB),
    RunFile("model.onnx", "on request: the float model as ONNX, input `pixels`, when it agrees with the app", 1024 * MB),
    RunFile("formats.json", "what the full-integer and ONNX checks found, per format", 1 * MB),
    RunFile("heatmap.tflite", "fine-tuned runs: the model for LiteRT with its class maps beside its probabilities "
                              "(and novelty score, where the run has one) (core/serving/heatmap.py)", 1024 * MB),
)}

# A model's outputs by name -> shape ("N" photos, "C" classes, "h" x "w" a feature map). `probabilities` is always
# there; `novelty` at most once; `class_map` once per backbone member, in heatmap.tflite (issue 20's heat maps).
OUTPUTS: dict[str, tuple[str, ...]] = {"probabilities": ("N", "C"), "novelty": ("N",), "class_map": ("N", "h", "w", "C")}


def _path(run_dir: Path, name: str) -> Path:
    """A run file that exists and is within its size limit."""
    path = Path(run_dir) / name
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise  # callers tell a file not written yet from a damaged one
    except OSError as exc:
        raise RunFolderInvalid(f"{name} of this run cannot be read ({exc.strerror or exc}).") from exc
    limit = FILES[name].max_bytes
    if size > limit:
        raise RunFolderInvalid(f"{name} of this run is {size / MB:,.0f} MB, more than the {limit / MB:,.0f} MB such "
                               "a file can be: it is not one this app wrote.")
    return path


def _read(run_dir: Path, name: str) -> bytes:
    try:
        return _path(run_dir, name).read_bytes()
    except FileNotFoundError:
        raise RunFolderInvalid(f"This run has no {name}: it did not finish, or its folder was changed.") from None


def read_labels(run_dir: Path) -> list[str]:
    """The class names in output order; each a valid class name, none twice."""
    data = _read(run_dir, "labels.txt")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RunFolderInvalid("labels.txt of this run is not UTF-8 text.") from None
    names = [line for line in text.split("\n") if line]
    if not names or len(names) > MAX_CLASSES:
        raise RunFolderInvalid(f"labels.txt of this run names {len(names)} classes; a model has 1 to {MAX_CLASSES}.")
    for name in names:
        try:
            valid = validate_name(name)
        except ValueError as exc:
            raise RunFolderInvalid(f"labels.txt of this run holds a name the app cannot use: {exc}") from None
        if valid != name:
            raise RunFolderInvalid(f"labels.txt of this run holds '{valid}' written another way than the app writes "
                                   "class names.")
    if len(set(names)) != len(names):
        raise RunFolderInvalid("labels.txt of this run names a class twice.")
    return names


def read_json(run_dir: Path, name: str) -> dict:
    """A run's JSON file as an object."""
    data = _read(run_dir, name)
    try:
        values = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise RunFolderInvalid(f"{name} of this run is not readable JSON.") from None
    if not isinstance(values, dict):
        raise RunFolderInvalid(f"{name} of this run holds a {type(values).__name__}, not the object the app writes.")
    return values


def read_metrics(run_dir: Path) -> dict:
    metrics = read_json(run_dir, "metrics.json")
    if not isinstance(metrics.get("backbone"), str):
        raise RunFolderInvalid("metrics.json of this run does not name its backbone.")
    for key, what in (("test_time_mirror", "mirroring"), ("test_time_zoom", "zoomed views")):
        if not isinstance(metrics.get(key, False), bool):
            raise RunFolderInvalid(f"metrics.json of this run says neither true nor false about {what}.")
    return metrics


def read_evaluation(run_dir: Path) -> dict | None:
    """evaluation.json checked against its own class names; None when the run has none."""
    if not (Path(run_dir) / "evaluation.json").exists():
        return None
    values = read_json(run_dir, "evaluation.json")
    try:
        names = values["class_names"]
        k, n = len(names), values["n"]
        confusion = np.asarray(values["confusion"], dtype=np.int64).reshape(k, k) if k else np.zeros((0, 0))
        ok = (all(isinstance(c, str) for c in names) and isinstance(n, int) and n >= 0 and int(confusion.sum()) == n
              and _number(values["accuracy"]) and 0 <= values["accuracy"] <= 1 and len(values["per_class"]) == k
              and all(isinstance(row, dict) and isinstance(row.get("class"), str)
                      and all(_number(row.get(k)) for k in ("precision", "recall", "f1", "support"))
                      for row in values["per_class"])
              and all(isinstance(m, dict) and m.get("true") in names and m.get("predicted") in names
                      and _number(m.get("confidence")) and isinstance(m.get("path"), (str, type(None)))
                      for m in values["misclassified"]))
    except (KeyError, TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise RunFolderInvalid("evaluation.json of this run does not hold an evaluation the app wrote.")
    return values


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_npz(path: Path, expected: dict[str, tuple[int | None, ...]]) -> dict[str, np.ndarray]:
    """Float arrays from an .npz, each header checked against its expected shape (None: any length) before its
    data is read."""
    name = Path(path).name
    try:
        with zipfile.ZipFile(path) as archive:
            return {key: _read_member(archive, name, key, shape) for key, shape in expected.items()}
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, OSError) as exc:
        if isinstance(exc, RunFolderInvalid):
            raise
        raise RunFolderInvalid(f"{name} of this run is damaged ({exc}).") from None


def _read_member(archive: zipfile.ZipFile, name: str, key: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError:
        raise RunFolderInvalid(f"{name} of this run has no `{key}` array.") from None
    with archive.open(info) as f:
        version = np.lib.format.read_magic(f)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        found, fortran, dtype = header(f)
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8) or dtype.hasobject:
            raise RunFolderInvalid(f"`{key}` in {name} holds {dtype}, not the float numbers of a model.")
        if len(found) != len(shape) or any(want is not None and got != want for got, want in zip(found, shape)):
            raise RunFolderInvalid(f"`{key}` in {name} has shape {tuple(found)}; this run needs {tuple(shape)}.")
        shape = tuple(found)  # a None in `shape` takes any length: the file's size limit bounds it
        size = math.prod(shape) * dtype.itemsize
        if name in FILES and size > FILES[name].max_bytes:  # a free length (None) is bounded by the file's limit
            raise RunFolderInvalid(f"`{key}` in {name} claims {size / MB:,.0f} MB, more than such a file holds.")
        if info.file_size > size + 65536:
            raise RunFolderInvalid(f"`{key}` in {name} is larger than its shape says.")
        data = f.read(size)
    if len(data) != size:
        raise RunFolderInvalid(f"`{key}` in {name} is cut short.")
    array = np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C")
    if not np.isfinite(array).all():
        raise RunFolderInvalid(f"`{key}` in {name} holds numbers that are not finite (NaN or infinity).")
    return array


def read_head(run_dir: Path, feature_dim: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """head.npz's kernel (D, C) and bias (C,) as float32, checked against the backbone and labels."""
    if not 0 < feature_dim <= MAX_FEATURE_DIM:
        raise RunFolderInvalid(f"This run's backbone gives {feature_dim} features; at most {MAX_FEATURE_DIM} fit.")
    try:
        path = _path(run_dir, "head.npz")
    except FileNotFoundError:
        raise RunFolderInvalid("This run has no head.npz.") from None
    arrays = read_npz(path, {"kernel": (feature_dim, n_classes), "bias": (n_classes,)})
    return arrays["kernel"].astype(np.float32), arrays["bias"].astype(np.float32)


def check_outputs(shapes: Sequence[Sequence[int | None]], n_classes: int, what: str) -> int:
    """The index of the `probabilities` output among a model's output shapes (batch first), after checking every
    output is one OUTPUTS allows: exactly one (N, C), at most one (N,) novelty score, any (N, h, w, C) class maps."""
    shapes = [tuple(s) for s in shapes]
    probabilities = [i for i, s in enumerate(shapes) if len(s) == 2 and s[1] == n_classes]
    novelty = [s for s in shapes if len(s) == 1]
    maps = [s for s in shapes if len(s) == 4 and s[3] == n_classes]
    if len(probabilities) != 1 or len(novelty) > 1 or 1 + len(novelty) + len(maps) != len(shapes):
        raise RunFolderInvalid(f"{what} gives outputs shaped {', '.join(map(str, shapes)) or 'nothing'}, but this "
                               f"run's labels need one probability per class ({n_classes} classes), at most a "
                               "novelty score, and class maps.")
    return probabilities[0]


def check_input(shape: Sequence[int | None], what: str) -> int:
    """The pixel size a model takes, from its input shape (N, S, S, 3)."""
    shape = tuple(shape)
    if len(shape) != 4 or shape[3] != 3 or shape[1] != shape[2] or not shape[1] or not 8 <= shape[1] <= MAX_INPUT_SIZE:
        raise RunFolderInvalid(f"{what} takes input shaped {shape}, not the square RGB photos this app gives.")
    return int(shape[1])


def check_tflite(interpreter, n_classes: int, what: str = "model.tflite") -> int:
    """Check a LiteRT interpreter (built, not yet allocated) keeps the contract; returns its probabilities output's
    index among its outputs. The tensors one photo needs are added up before anything is allocated."""
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or inputs[0]["dtype"] != np.float32:
        raise RunFolderInvalid(f"{what} takes {len(inputs)} inputs, not one photo batch of float pixels.")
    check_input(inputs[0]["shape"], what)
    index = check_outputs([d["shape"] for d in outputs], n_classes, what)
    total = 0
    for tensor in interpreter.get_tensor_details():
        shape = [max(int(d), 1) for d in tensor["shape"]]
        total += math.prod(shape) * np.dtype(tensor["dtype"]).itemsize
    if total > MAX_TENSOR_BYTES:
        raise RunFolderInvalid(f"{what} would need {total / MB:,.0f} MB for one photo: it is not one this app made.")
    return index


def check_keras_file(run_dir: Path) -> Path:
    """model.keras within its size, as an archive whose parts add up to no more than that limit."""
    path = _path(run_dir, "model.keras")
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise RunFolderInvalid(f"model.keras of this run is damaged ({exc}).") from None
    if unpacked > FILES["model.keras"].max_bytes:
        raise RunFolderInvalid("model.keras of this run unpacks to more than a model this app writes.")
    return path


def check_keras_model(model, n_classes: int) -> int:
    """A loaded Keras model keeps the contract (input, outputs, finite weights); the probabilities output's index."""
    check_input(model.input_shape, "model.keras")
    shapes = model.output_shape if isinstance(model.output_shape, list) else [model.output_shape]
    index = check_outputs(shapes, n_classes, "model.keras")
    if not all(np.isfinite(w).all() for w in model.get_weights()):
        raise RunFolderInvalid("model.keras of this run holds weights that are not finite (NaN or infinity).")
    return index


def check_probabilities(probabilities: np.ndarray, n_classes: int) -> np.ndarray:
    """A forward pass's (N, C) probabilities, finite; a model that gives NaN is broken, not unsure."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 2 or probabilities.shape[1] != n_classes or not np.isfinite(probabilities).all():
        raise RunFolderInvalid("This run's model gives numbers that are not probabilities (NaN or the wrong "
                               "shape): its files are damaged. Train again.")
    return probabilities


def read_novelty_reference(run_dir: Path, feature_dim: int | None = None) -> np.ndarray:
    """novelty.npz's `reference` (R, D), checked (D: the backbone's embedding size when given)."""
    arrays = read_npz(_path(run_dir, "novelty.npz"), {"reference": (None, feature_dim)})
    if len(arrays["reference"]) == 0:
        raise RunFolderInvalid("novelty.npz of this run holds no reference photos.")
    return arrays["reference"]


def read_novelty_settings(run_dir: Path) -> dict:
    """novelty.json as a dict whose threshold and k a novelty check can use."""
    try:
        values = json.loads(_read(run_dir, "novelty.json"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunFolderInvalid(f"novelty.json of this run is damaged ({exc}).") from None
    if (not isinstance(values, dict) or not _number(values.get("threshold")) or not _number(values.get("suggested"))
            or not isinstance(values.get("k"), int) or not 1 <= values["k"] <= 1000
            or not all(_number(x) for key in ("val_scores", "left_out_scores", "hidden_scores")
                       for x in values.get(key, []))):
        raise RunFolderInvalid("novelty.json of this run does not hold a threshold, k and scores.")
    return values
