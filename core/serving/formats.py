"""More ways to take a model away: full-integer TFLite and ONNX, each checked against the app before it ships.

* `model_int8.tflite`: int8 weights and activations, only integer operations inside, uint8 pixels in
  and uint8 probabilities out (scale 1/256), for microcontrollers and Edge TPU-style accelerators.
  It has no `novelty` output: the novelty score's normalisation and ranking have no integer kernels.
  Calibrated on the run's own training photos, read a few at a time; its accuracy on the validation
  photos is measured beside the float model's.
* `model.onnx`: the float model converted with tf2onnx, run with onnxruntime on the validation
  photos; kept only when its top class agrees with the app's on at least 99 % of them.

What each check found goes to `formats.json` in the run folder, for the Results page and the CLI.
The photos a run trained and validated on are listed in `photos.json` (written when it is saved).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import time
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from core.store import run_folder
from core.serving.export import TFLITE_FILES
from core.files import atomic_write
from core.images import ImageRejected, load_rgb

PHOTOS_FILE = "photos.json"
FORMATS_FILE = "formats.json"
REQUEST_FILE = "formats_requested"  # asked for on Results, not made yet
INT8_FILE = "model_int8.tflite"
ONNX_FILE = "model.onnx"
CALIBRATION_PHOTOS = 200  # spread over the classes; more did not move the int8 accuracy
BATCH = 16  # photos decoded at once: calibration and checks never hold more in memory
ONNX_MIN_AGREEMENT = 0.99
ONNX_OPSET = 17
OUTPUT_NAMES = ("probabilities", "novelty")
NOVELTY_FILE = "novelty.json"

Photo = tuple[Path, int]  # path, class index


def write_photo_list(run_dir: Path, train: Sequence, val: Sequence) -> None:
    """photos.json: each training and validation photo of the run (path, class index, content hash)."""
    def rows(samples):
        return [[str(s.path), int(s.label), s.sha256] for s in samples]

    atomic_write(Path(run_dir) / PHOTOS_FILE, json.dumps({"train": rows(train), "val": rows(val)}).encode())


def run_photos(run_dir: Path, split: str) -> list[Photo]:
    """The run's photos of `split` that are still there unchanged. A project run trained on hard links in its
    photos/ folder, removed afterwards: those are found again in the project's images/ folder."""
    run_dir = Path(run_dir)
    if not (run_dir / PHOTOS_FILE).exists():
        return []
    found = []
    for name, label, sha256 in run_folder.read_json(run_dir, PHOTOS_FILE).get(split, []):
        photo = Path(name)
        if not photo.exists() and photo.is_relative_to(run_dir / "photos"):
            photo = run_dir.parents[1] / "images" / photo.relative_to(run_dir / "photos")
        if photo.is_file() and hashlib.sha256(photo.read_bytes()).hexdigest() == sha256:
            found.append((photo, label))
    return found


def _spread(photos: list[Photo], most: int) -> list[Photo]:
    """At most `most` photos, taken evenly from each class in turn."""
    by_class: dict[int, list[Photo]] = {}
    for photo in photos:
        by_class.setdefault(photo[1], []).append(photo)
    queues = [iter(group) for group in by_class.values()]
    chosen: list[Photo] = []
    while queues and len(chosen) < most:
        for queue in list(queues):
            photo = next(queue, None)
            if photo is None:
                queues.remove(queue)
            elif len(chosen) < most:
                chosen.append(photo)
    return chosen


def pixel_batches(photos: Sequence[Photo], size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(pixels, labels) BATCH photos at a time, as the app reads them; unreadable photos are left out."""
    for start in range(0, len(photos), BATCH):
        pixels, labels = [], []
        for path, label in photos[start:start + BATCH]:
            try:
                pixels.append(load_rgb(path, size))
                labels.append(label)
            except (OSError, ImageRejected):
                continue
        if pixels:
            yield np.stack(pixels).astype(np.float32), np.asarray(labels)


class ModelRunner:
    """A LiteRT, ONNX or Keras model file on float pixels 0-255: quantizes and dequantizes for a full-integer
    file."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if self.path.suffix == ".keras":
            from core.serving.predict import Classifier

            self._keras = Classifier.load(self.path.parent)
        elif self.path.suffix == ".onnx":
            import onnxruntime

            self._session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        else:
            from ai_edge_litert.interpreter import Interpreter

            self._runner = Interpreter(model_path=str(path)).get_signature_runner()

    def probabilities(self, pixels: np.ndarray) -> np.ndarray:
        if self.path.suffix == ".keras":
            return self._keras.probabilities(pixels)
        if self.path.suffix == ".onnx":
            return np.asarray(self._session.run([OUTPUT_NAMES[0]], {"pixels": pixels.astype(np.float32)})[0])
        rows = [self._one(pixels[i:i + 1]) for i in range(len(pixels))]  # a full-integer file is fixed at batch 1
        return np.concatenate(rows)

    def _one(self, pixels: np.ndarray) -> np.ndarray:
        inputs = self._runner.get_input_details()
        name, details = next(iter(inputs.items()))
        if details["dtype"] != np.float32:
            scale, zero = details["quantization"]
            info = np.iinfo(details["dtype"])
            pixels = np.clip(np.round(pixels / scale + zero), info.min, info.max)
        outputs = self._runner(**{name: pixels.astype(details["dtype"])})
        out_details = self._runner.get_output_details()
        key = OUTPUT_NAMES[0] if OUTPUT_NAMES[0] in outputs else next(k for k, v in outputs.items() if v.ndim == 2)
        value = outputs[key]
        if out_details[key]["dtype"] != np.float32:
            scale, zero = out_details[key]["quantization"]
            value = (value.astype(np.float32) - zero) * scale
        return value


def compare(run_dir: Path, model: Path, photos: Sequence[Photo]) -> dict:
    """Top-1 agreement with the app, accuracy of both, largest probability gap and time per photo, on `photos`."""
    from core.serving.predictor import load_predictor

    app = load_predictor(run_dir)
    runner = ModelRunner(model)
    agree = right = app_right = n = 0
    gap, seconds = 0.0, 0.0
    for pixels, labels in pixel_batches(photos, app.input_size):
        expected = app.probabilities(pixels)
        started = time.perf_counter()
        got = runner.probabilities(pixels)
        seconds += time.perf_counter() - started
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        right += int((got.argmax(1) == labels).sum())
        app_right += int((expected.argmax(1) == labels).sum())
        gap = max(gap, float(np.abs(got - expected).max()))
        n += len(labels)
    if not n:
        raise ValueError("None of the run's validation photos is still there to check the model on.")
    return {"photos": n, "agreement": agree / n, "accuracy": right / n, "app_accuracy": app_right / n,
            "largest_probability_gap": gap, "ms_per_photo": 1000 * seconds / n}


def export_int8(run_dir: Path, photos: Sequence[Photo] | None = None) -> Path:
    """model_int8.tflite, calibrated on the run's training photos; refused unless only integers are inside."""
    import tensorflow as tf

    from core.serving.predict import Classifier

    import keras

    run_dir = Path(run_dir)
    model = Classifier.load(run_dir).model
    if isinstance(model.output, dict):  # the novelty score's normalising and ranking have no integer kernels
        model = keras.Model(model.input, {"probabilities": model.output["probabilities"]})
    size = int(model.input_shape[1])
    photos = _spread(list(photos if photos is not None else run_photos(run_dir, "train")), CALIBRATION_PHOTOS)
    if not photos:
        raise ValueError("No training photos of this run are left to calibrate a full-integer model on.")

    def calibration():
        for pixels, _ in pixel_batches(photos, size):
            for row in pixels:
                yield [row[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.uint8
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer = converter.convert()
    problems = integer_only_problems(flatbuffer)
    if problems:
        raise RuntimeError(f"The full-integer conversion left {problems}.")
    path = run_dir / INT8_FILE
    atomic_write(path, flatbuffer)
    return path


def integer_only_problems(flatbuffer: bytes) -> str:
    """'' when every tensor is an integer and the input and outputs are 8-bit; else what is not."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    floats = [d["name"] for d in interpreter.get_tensor_details()
              if not np.issubdtype(np.dtype(d["dtype"]), np.integer)]
    ends = [d for d in interpreter.get_input_details() + interpreter.get_output_details()
            if np.dtype(d["dtype"]) not in (np.dtype(np.int8), np.dtype(np.uint8))]
    problems = ([f"{len(floats)} non-integer tensors ({', '.join(floats[:3])})"] if floats else []) + \
        ([f"non-8-bit inputs or outputs ({', '.join(d['name'] for d in ends)})"] if ends else [])
    return "; ".join(problems)


def export_onnx(run_dir: Path) -> Path:
    """model.onnx converted from the run's model.tflite, its input named `pixels` and outputs by the contract."""
    import onnx
    import tf2onnx.convert

    run_dir = Path(run_dir)
    with contextlib.redirect_stdout(io.StringIO()):
        proto, _ = tf2onnx.convert.from_tflite(str(run_dir / TFLITE_FILES[False]), opset=ONNX_OPSET)
    graph = proto.graph
    names = {graph.input[0].name: "pixels"}
    outputs = sorted(graph.output, key=lambda o: -len(o.type.tensor_type.shape.dim))  # (N, C) first, then (N,)
    names.update({o.name: new for o, new in zip(outputs, OUTPUT_NAMES)})
    for value in [*graph.input, *graph.output]:
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    onnx.checker.check_model(proto)
    path = run_dir / ONNX_FILE
    atomic_write(path, proto.SerializeToString())
    return path


def novelty_threshold(run_dir: Path) -> float | None:
    """The run's novelty threshold in force (novelty.json, issue 21's check): above it, "not one of your classes"."""
    if not (Path(run_dir) / NOVELTY_FILE).exists():
        return None
    return float(run_folder.read_json(run_dir, NOVELTY_FILE)["threshold"])


def read_report(run_dir: Path) -> dict:
    return run_folder.read_json(run_dir, FORMATS_FILE) if (Path(run_dir) / FORMATS_FILE).exists() else {}


def _record(run_dir: Path, key: str, values: dict) -> None:
    atomic_write(Path(run_dir) / FORMATS_FILE, json.dumps({**read_report(run_dir), key: values}, indent=2).encode())


def make_int8(run_dir: Path, photos: Sequence[Photo] | None = None, checks: Sequence[Photo] | None = None) -> dict:
    """Convert, check against the validation photos, record and return the figures (or the failure)."""
    run_dir = Path(run_dir)
    started = time.time()
    try:
        path = export_int8(run_dir, photos)
        figures = {"file": path.name, "bytes": path.stat().st_size, "seconds": round(time.time() - started, 1),
                   **compare(run_dir, path, checks if checks is not None else run_photos(run_dir, "val"))}
    except Exception as exc:
        (run_dir / INT8_FILE).unlink(missing_ok=True)
        figures = {"error": f"{type(exc).__name__}: {exc}"}
    _record(run_dir, "tflite-int8", figures)
    return figures


def make_onnx(run_dir: Path, checks: Sequence[Photo] | None = None) -> dict:
    """Convert, keep only when it agrees with the app on >= 99 % of the validation photos; record the figures."""
    run_dir = Path(run_dir)
    started = time.time()
    try:
        path = export_onnx(run_dir)
        figures = {"file": path.name, "bytes": path.stat().st_size, "seconds": round(time.time() - started, 1),
                   **compare(run_dir, path, checks if checks is not None else run_photos(run_dir, "val"))}
        if figures["agreement"] < ONNX_MIN_AGREEMENT:
            figures["error"] = (f"ONNX agreed with the app on {figures['agreement']:.1%} of {figures['photos']} "
                                f"validation photos (at least {ONNX_MIN_AGREEMENT:.0%} needed): not shipped.")
    except Exception as exc:
        figures = {"error": f"{type(exc).__name__}: {exc}"}
    if "error" in figures:
        (run_dir / ONNX_FILE).unlink(missing_ok=True)
    _record(run_dir, "onnx", figures)
    return figures


def formats_state(run_dir: Path) -> str:
    """"ready" (both checked, shipped or not), "preparing" (asked for) or "none"."""
    report = read_report(run_dir)
    if "tflite-int8" in report and "onnx" in report:
        return "ready"
    return "preparing" if (Path(run_dir) / REQUEST_FILE).exists() else "none"


def assemble_more(run_dir: Path) -> None:
    """Both formats for a finished run whose float downloads exist (after them: those come first)."""
    report = read_report(run_dir)
    if "tflite-int8" not in report:
        make_int8(run_dir)
    if "onnx" not in report:
        make_onnx(run_dir)
    (Path(run_dir) / REQUEST_FILE).unlink(missing_ok=True)
