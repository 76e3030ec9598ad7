"""A web page that is the model: a zip with index.html, the run's model.tflite and labels, and LiteRT.js.

Served by any web server (`python3 -m http.server` in the unzipped folder), the page classifies
uploaded photos and the live camera offline, in the browser, with the "not sure" bar and the
novelty check when the run has one. Its pixels follow the app's (`core/serving/web/preprocess.js` does
what `core.images.load_rgb` does), so its verdicts are the app's.
"""

from __future__ import annotations

import html
import json
import struct
import zipfile
from pathlib import Path

from core.serving.export import METRICS_FILE, TFLITE_FILES, assemble_downloads
from core.files import atomic_path
from core.serving.formats import novelty_threshold
from core.serving.predict import LABELS_FILE, read_labels
from core.serving.web_runtime import runtime_files

PAGE_DIR = Path(__file__).parent / "web"
PAGE_FILES = ("index.html", "app.js", "classifier.js", "preprocess.js", "draft.js", "jpeg-js.js", "LICENSE-jpeg-js.txt")
DEFAULT_THRESHOLD = 0.6  # the "not sure" bar Try it starts with
SERVE_COMMAND = "python3 -m http.server 8000"
PAGE_URL = "http://localhost:8000/"


def page_config(run_dir: Path, title: str) -> dict:
    """model.json: what the page needs to know about the run."""
    metrics = json.loads((Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8"))
    return {"title": title, "labels": read_labels(run_dir), "input_size": _input_size(run_dir),
            "model": "model.tflite", "threshold": DEFAULT_THRESHOLD,
            "novelty_threshold": novelty_threshold(run_dir), "backbone": metrics.get("backbone")}


def _input_size(run_dir: Path) -> int:
    from ai_edge_litert.interpreter import Interpreter

    return int(Interpreter(model_path=str(Path(run_dir) / TFLITE_FILES[False])).get_input_details()[0]["shape"][1])


def one_photo_batch(flatbuffer: bytes) -> bytes:
    """The same LiteRT model with its batch dimension fixed at 1: LiteRT.js refuses a (1, S, S, 3) input for a
    model declared (-1, S, S, 3) and cannot resize inputs. Only the declared shapes change (Tensor.shape_signature,
    field 7 of the schema's Tensor table; Model.subgraphs is field 2, SubGraph.tensors field 0)."""
    from flatbuffers.table import Table

    data = bytearray(flatbuffer)

    def tables(table: Table, slot: int) -> list[Table]:
        offset = table.Offset(4 + 2 * slot)
        start = table.Vector(offset) if offset else 0
        return [Table(data, table.Indirect(start + 4 * i)) for i in range(table.VectorLen(offset) if offset else 0)]

    for subgraph in tables(Table(data, struct.unpack_from("<I", data, 0)[0]), 2):
        for tensor in tables(subgraph, 0):
            offset = tensor.Offset(4 + 2 * 7)
            if offset and tensor.VectorLen(offset) and struct.unpack_from("<i", data, tensor.Vector(offset))[0] == -1:
                struct.pack_into("<i", data, tensor.Vector(offset), 1)
    return bytes(data)


def default_title(labels: list[str]) -> str:
    return " or ".join(labels) if len(labels) <= 3 else f"{len(labels)} kinds of photo"


def readme(folder: str, config: dict) -> str:
    from core.serving.snippets import javascript

    return f"""{config['title']}: an image classifier made with TransferLab
{'=' * 60}

Classes, in the order of the model's outputs: {', '.join(config['labels'])}

To use it, serve this folder with any web server and open the page. With Python:

    cd {folder}
    {SERVE_COMMAND}

then open {PAGE_URL} in a browser. It works offline: the model and its runtime (LiteRT.js, in litertjs/) are
all here, and no photo leaves the computer. Opening index.html straight from disk does not work: browsers run
WebAssembly and the camera only for served pages (the camera needs localhost or https).

Files
  index.html, app.js, classifier.js, preprocess.js   the page
  draft.js, jpeg-js.js   large JPEGs decoded at reduced scale as TransferLab does (jpeg-js: BSD-3-Clause, see
                         LICENSE-jpeg-js.txt)
  model.tflite    the model: raw RGB pixels (1, {config['input_size']}, {config['input_size']}, 3), 0-255, in; class probabilities out
  labels.txt      class names, one a line, in output order
  model.json      what the page reads: labels, input size, the "not sure" bar it starts at
  litertjs/       LiteRT.js (@litertjs/core), Apache-2.0: see litertjs/LICENSE.txt

In your own page (preprocess.js crops the centre square and resizes it the way TransferLab does):

{javascript(config)}"""


def export_web(run_dir: Path, destination: Path, title: str | None = None) -> Path:
    """Write the web page zip for a run at `destination` (the run's TFLite file is made first if missing)."""
    run_dir = Path(run_dir)
    if not (run_dir / TFLITE_FILES[False]).exists():
        assemble_downloads(run_dir)
    runtime = runtime_files()
    config = page_config(run_dir, title or default_title(read_labels(run_dir)))
    folder = Path(destination).stem
    with atomic_path(Path(destination)) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in PAGE_FILES:  # the title in the page itself: it shows even opened from disk
            text = (PAGE_DIR / name).read_text(encoding="utf-8").replace("{{title}}", html.escape(config["title"]))
            zf.writestr(f"{folder}/{name}", text)
        zf.writestr(f"{folder}/model.tflite", one_photo_batch((run_dir / TFLITE_FILES[False]).read_bytes()))
        zf.write(run_dir / LABELS_FILE, f"{folder}/labels.txt")
        zf.writestr(f"{folder}/model.json", json.dumps(config, indent=2, ensure_ascii=False))
        zf.writestr(f"{folder}/README.txt", readme(folder, config))
        for name, path in runtime.items():
            zf.write(path, f"{folder}/litertjs/{name}")
    return Path(destination)
