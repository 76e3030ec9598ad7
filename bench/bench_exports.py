"""Every export format against the app, on ants vs. bees: file size, top-1 agreement, accuracy, time per photo.

    python -m bench.bench_exports

Trains a head-only run on hymenoptera/train (its own 20 % validation split), makes every format,
and runs each on the run's validation photos and on 20 photos of hymenoptera/val it never saw,
beside the app's own predictor (backbone LiteRT + numpy head). The web page runs in headless
Chromium, served from its unzipped folder with every other address refused: the same photos
uploaded, then the fake camera (a still photo as video) for 10 s. Times are per photo, one at a
time (the web page's include decoding and resizing in JavaScript).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from bench.common import dataset, table  # noqa: E402
from core.serving import export  # noqa: E402
from core.serving import formats  # noqa: E402
from core.serving.evaluate import image_folder  # noqa: E402
from core.images import load_rgb  # noqa: E402
from core.serving.predictor import load_predictor  # noqa: E402
from core.jobs.pipeline import data_from_folders, train_and_save  # noqa: E402
from core.model.train import TrainConfig  # noqa: E402
from core.serving.web_export import export_web  # noqa: E402
from tests.browser import fake_camera_args  # noqa: E402
from tests.web_page import camera_frames, classify_in_page, offline_page, served, unzip_page, write_y4m  # noqa: E402

UNSEEN = 20


def unseen_photos(labels: list[str]) -> list[formats.Photo]:
    paths, classes, _ = image_folder(dataset("hymenoptera") / "val", labels)
    return formats._spread(list(zip(paths, classes)), UNSEEN)


def web_row(run_dir: Path, tmp: Path, sets: dict[str, list[formats.Photo]]) -> list:
    app = load_predictor(run_dir)
    folder = unzip_page(export_web(run_dir, tmp / "web.zip"), tmp / "web")
    camera_photo = sets["unseen"][0][0]
    frame = write_y4m(tmp / "camera.y4m", camera_photo)
    figures = []
    with served(folder) as url, offline_page(url, fake_camera_args(tmp / "camera.y4m")) as (page, refused):
        for name in ("validation", "unseen"):
            photos = [p for p, _ in sets[name]]
            expected = app.predict_paths(photos)[0]
            page.evaluate("document.getElementById('results').replaceChildren()")
            cards = classify_in_page(page, photos)
            got = np.array([c["probabilities"] for c in cards])
            labels = np.array([label for _, label in sets[name]])
            figures.append(((got.argmax(1) == expected.argmax(1)).mean(), (got.argmax(1) == labels).mean(),
                            np.abs(got - expected).max(), np.median([c["ms"] for c in cards])))
        started = time.time()
        first = camera_frames(page, frames=1)
        time.sleep(10)
        live = camera_frames(page, frames=1)
        on_frame = app.probabilities(load_rgb(frame, app.input_size)[None])[0]
        rate = (live["frames"] - first["frames"]) / (time.time() - started)
    assert not refused, refused
    size = (tmp / "web.zip").stat().st_size
    camera = f"camera: {live['top']} (app {app.class_names[int(on_frame.argmax())]}), " \
             f"gap {np.abs(np.array(live['probabilities']) - on_frame).max():.4f}, {rate:.1f} frames/s"
    (v_agree, v_acc, v_gap, v_ms), (u_agree, u_acc, u_gap, u_ms) = figures
    return ["web page (Chromium)", f"{size / 1e6:.1f} MB zip", f"{v_agree:.1%}", f"{v_acc:.1%}", f"{v_gap:.4f}",
            f"{u_agree:.1%}", f"{u_acc:.1%}", f"{v_ms:.0f}", camera]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        run_dir = tmp / "run"
        train_and_save(data_from_folders(dataset("hymenoptera") / "train"), TrainConfig(), run_dir)
        started = time.time()
        int8 = formats.make_int8(run_dir)
        onnx = formats.make_onnx(run_dir)
        print(f"full-integer conversion {int8.get('seconds')} s, ONNX {onnx.get('seconds')} s "
              f"(wall {time.time() - started:.0f} s, both with their checks)", flush=True)
        sets = {"validation": formats.run_photos(run_dir, "val"),
                "unseen": unseen_photos(load_predictor(run_dir).class_names)}
        rows = []
        for name, path in (("keras", run_dir / "model.keras"), ("tflite", run_dir / "model.tflite"),
                           ("tflite-quant", run_dir / "model_quant.tflite"),
                           ("tflite-int8", run_dir / formats.INT8_FILE), ("onnx", run_dir / formats.ONNX_FILE)):
            if not path.exists():
                rows.append([name, "not made", formats.read_report(run_dir).get(name, {}).get("error", "")])
                continue
            seen, unseen = (formats.compare(run_dir, path, sets[s]) for s in ("validation", "unseen"))
            rows.append([name, f"{path.stat().st_size / 1e6:.1f} MB", f"{seen['agreement']:.1%}",
                         f"{seen['accuracy']:.1%}", f"{seen['largest_probability_gap']:.4f}",
                         f"{unseen['agreement']:.1%}", f"{unseen['accuracy']:.1%}", f"{seen['ms_per_photo']:.0f}", ""])
        rows.append(web_row(run_dir, tmp, sets))
        app_v = formats.compare(run_dir, run_dir / "model.tflite", sets["validation"])["app_accuracy"]
        app_u = formats.compare(run_dir, run_dir / "model.tflite", sets["unseen"])["app_accuracy"]
        print(f"\nhymenoptera: {len(sets['validation'])} validation photos (app right: {app_v:.1%}), "
              f"{len(sets['unseen'])} unseen photos from val/ (app right: {app_u:.1%}); load {os.getloadavg()[0]:.1f}")
        print(table(["format", "size", "agree (val)", "right (val)", "largest gap (val)", "agree (unseen)",
                     "right (unseen)", "ms/photo", ""], rows))


if __name__ == "__main__":
    sys.exit(main())
