"""Taking the model anywhere: the web page zip, full-integer TFLite, ONNX, the CLI, and the code snippets, each
checked against the app's own answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.serving import formats

from core.serving import snippets
from core.__main__ import main as cli
from core.serving.predictor import load_predictor
from core.serving.web_export import export_web, one_photo_batch
from core.serving.web_runtime import RuntimeMissing, runtime_files

pytestmark = pytest.mark.slow


def require_runtime() -> None:
    """LiteRT.js comes with `make` (python -m core.serving.web_runtime); CI must have it, a bare checkout skips."""
    try:
        runtime_files()
    except RuntimeMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def photos_of(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.jpg"))


def test_run_lists_its_photos_for_calibration_and_checks(trained_run, folders):
    assert [p.name for p, _ in formats.run_photos(trained_run, "val")] == [p.name for p in photos_of(folders / "val")]
    assert len(formats.run_photos(trained_run, "train")) == 32


def test_web_zip_holds_the_page_the_model_and_its_runtime(trained_run, tmp_path):
    require_runtime()
    archive = export_web(trained_run, tmp_path / "shapes-web.zip", title="Shapes")
    names = set(zipfile.ZipFile(archive).namelist())
    assert {f"shapes-web/{n}" for n in ("index.html", "app.js", "preprocess.js", "classifier.js", "draft.js",
                                        "jpeg-js.js", "LICENSE-jpeg-js.txt", "model.tflite",
                                        "labels.txt", "model.json", "README.txt", "litertjs/litert.js",
                                        "litertjs/wasm-utils.js", "litertjs/LICENSE.txt",
                                        "litertjs/wasm/litert_wasm_internal.wasm")} <= names
    with zipfile.ZipFile(archive) as zf:
        config = json.loads(zf.read("shapes-web/model.json"))
        readme = zf.read("shapes-web/README.txt").decode()
        assert "Apache License" in zf.read("shapes-web/litertjs/LICENSE.txt").decode()
        assert "Eugene Ware" in zf.read("shapes-web/LICENSE-jpeg-js.txt").decode()
        model = zf.read("shapes-web/model.tflite")
    assert config["labels"] == ["blobs", "stripes"] and config["input_size"] == 224 and config["title"] == "Shapes"
    assert "python3 -m http.server 8000" in readme and "http://localhost:8000/" in readme

    from ai_edge_litert.interpreter import Interpreter

    fixed, original = Interpreter(model_content=model), Interpreter(model_path=str(trained_run / "model.tflite"))
    assert list(fixed.get_input_details()[0]["shape_signature"]) == [1, 224, 224, 3]  # LiteRT.js needs batch 1
    assert list(original.get_input_details()[0]["shape_signature"]) == [-1, 224, 224, 3]
    pixels = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    answers = []
    for interpreter in (fixed, original):
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
        interpreter.invoke()
        answers.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(*answers)
    assert one_photo_batch(model) == model  # already fixed: nothing left to change


def test_full_integer_tflite_has_only_integers_inside_and_is_checked(trained_run):
    figures = formats.make_int8(trained_run)
    assert "error" not in figures, figures
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(trained_run / formats.INT8_FILE))
    kinds = {np.dtype(d["dtype"]) for d in interpreter.get_tensor_details()}
    assert kinds <= {np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int32)}, kinds
    assert interpreter.get_input_details()[0]["dtype"] == np.uint8
    assert interpreter.get_output_details()[0]["dtype"] == np.uint8
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "DEQUANTIZE" not in ops and "CONV_2D" in ops
    assert figures["photos"] == 12 and figures["accuracy"] >= 0.9 and figures["agreement"] >= 0.9
    assert formats.read_report(trained_run)["tflite-int8"]["accuracy"] == figures["accuracy"]
    assert formats.integer_only_problems((trained_run / "model.tflite").read_bytes())  # the float one is refused


def test_onnx_ships_only_when_it_agrees_with_the_app(trained_run, monkeypatch):
    figures = formats.make_onnx(trained_run)
    assert "error" not in figures and figures["agreement"] >= formats.ONNX_MIN_AGREEMENT, figures
    import onnxruntime

    session = onnxruntime.InferenceSession(str(trained_run / formats.ONNX_FILE), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixels"]
    novelty = ["novelty"] if (trained_run / "novelty.json").exists() else []  # the run's novelty check travels too
    assert sorted(o.name for o in session.get_outputs()) == sorted(["probabilities", *novelty])

    monkeypatch.setattr(formats, "ONNX_MIN_AGREEMENT", 1.01)  # a converter that cannot be trusted
    refused = formats.make_onnx(trained_run)
    assert "not shipped" in refused["error"] and "100.0%" in refused["error"]
    assert not (trained_run / formats.ONNX_FILE).exists() and formats.read_report(trained_run)["onnx"] == refused


def run_snippet(code: str, folder: Path, files: dict[str, Path], photo: Path) -> str:
    """Run a snippet as a user would: in a folder holding the files it names and a photo.jpg."""
    for name, source in files.items():
        (folder / name).write_bytes(source.read_bytes())
    (folder / "photo.jpg").write_bytes(photo.read_bytes())
    (folder / "snippet.py").write_text(code)
    done = subprocess.run([sys.executable, "snippet.py"], cwd=folder, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_python_snippets_run_and_answer_like_the_app(trained_run, folders, tmp_path):
    if "tflite-int8" not in formats.read_report(trained_run):
        formats.make_int8(trained_run)
    files = snippets.RunFiles.of(trained_run, "shapes-run1")
    app = load_predictor(trained_run)
    for i, photo in enumerate(photos_of(folders / "val")[::5]):
        row = app.predict_paths([photo])[0][0]
        expected = app.class_names[int(row.argmax())]
        folder = tmp_path / str(i)
        for name, (code, file_map) in {
            "litert": (snippets.python_litert(files), {"shapes-run1.tflite": trained_run / "model.tflite"}),
            "int8": (snippets.python_litert(files, "shapes-run1-int8.tflite"),
                     {"shapes-run1-int8.tflite": trained_run / formats.INT8_FILE}),
            "keras": (snippets.python_keras(files), {"shapes-run1.keras": trained_run / "model.keras"}),
        }.items():
            (folder / name).mkdir(parents=True)
            label, share = run_snippet(code, folder / name, file_map, photo).rsplit(" ", 1)
            assert label == expected, (name, photo.name)
            if name != "int8":
                assert float(share.rstrip("%")) / 100 == pytest.approx(row.max(), abs=0.002), (name, photo.name)
    assert '"blobs", "stripes"' in snippets.kotlin(files) and "shapes-run1.tflite" in snippets.kotlin(files)


def test_cli_exports_every_format(trained_run, tmp_path, capsys):
    require_runtime()
    assert cli(["export", str(trained_run), "--format", "web", "--out", str(tmp_path / "page.zip")]) == 0
    assert zipfile.is_zipfile(tmp_path / "page.zip")
    assert cli(["export", str(trained_run), "--format", "keras", "--out", str(tmp_path / "m.keras")]) == 0
    assert (tmp_path / "m.keras").stat().st_size == (trained_run / "model.keras").stat().st_size
    assert cli(["export", str(trained_run), "--format", "tflite-quant"]) == 0
    assert cli(["export", str(tmp_path), "--format", "web"]) == 2
    assert "not a finished run folder" in capsys.readouterr().err
