"""The exported web page in headless Chromium, served from the unzipped folder with every other address refused:
photos of every size and format, the fake camera, the "not sure" bar, the JavaScript snippet, and opened from disk.
Its answers are the app's: the same top class on >= 99 % of 200 photos, probabilities within 0.02 on every one."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.images import load_rgb
from core.serving.predictor import load_predictor
from core.jobs.pipeline import data_from_folders, train_and_save
from core.serving.snippets import javascript
from core.model.train import TrainConfig
from core.serving.web_export import export_web
from tests.browser import ARTIFACTS, browser_page, fake_camera_args, screenshot
from tests.conftest import SHARED_DATASETS
from tests.photos import write_image_folder
from tests.test_exports import require_runtime
from tests.web_page import (camera_frames, classify_in_page, offline_page, page_config, served, unzip_page,
                            varied_photos, write_y4m)

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PHOTOS = 200
TRAIN_PER_CLASS = 40


def training_set(root: Path) -> tuple[Path, list[Path]]:
    """hymenoptera's first photos per class to train on, its other photos to check with; synthetic ones without it."""
    source = SHARED_DATASETS / "hymenoptera"
    if not source.is_dir():
        write_image_folder(root / "train", {"stripes": 16, "blobs": 16})
        write_image_folder(root / "others", {"stripes": PHOTOS // 2, "blobs": PHOTOS // 2}, offset=1000)
        return root / "train", sorted((root / "others").glob("*/*"))
    others = []
    for folder in sorted(p for p in (source / "train").iterdir() if p.is_dir()):
        photos = sorted(folder.glob("*.jpg"))
        (root / "train" / folder.name).mkdir(parents=True)
        for photo in photos[:TRAIN_PER_CLASS]:
            shutil.copy(photo, root / "train" / folder.name / photo.name)
        others += photos[TRAIN_PER_CLASS:]
    val = sorted((source / "val").glob("*/*.jpg"))
    return root / "train", (val + others)[:PHOTOS]


@pytest.fixture(scope="module")
def page_folder(tmp_path_factory) -> tuple[Path, Path, list[Path]]:
    require_runtime()
    root = tmp_path_factory.mktemp("web")
    train_dir, sources = training_set(root)
    run_dir = root / "run"
    train_and_save(data_from_folders(train_dir), TrainConfig(), run_dir)
    folder = unzip_page(export_web(run_dir, root / "classifier-web.zip", title="Ants or bees"), root / "unzipped")
    return run_dir, folder, varied_photos(sources, root / "varied")


def test_served_page_answers_like_the_app_offline_on_photos_and_the_camera(page_folder, tmp_path):
    run_dir, folder, photos = page_folder
    app = load_predictor(run_dir)
    expected, readable = app.predict_paths(photos)
    assert len(readable) == len(photos) == PHOTOS
    camera_photo = photos[3]
    frame = write_y4m(tmp_path / "camera.y4m", camera_photo)
    (folder / "snippet.html").write_text(javascript(page_config(folder)))

    with served(folder) as url, offline_page(url, fake_camera_args(tmp_path / "camera.y4m")) as (page, refused):
        cards = classify_in_page(page, photos)
        assert [c["done"] for c in cards] == ["ok"] * PHOTOS, [c["text"] for c in cards if c["done"] != "ok"][:3]
        got = np.array([c["probabilities"] for c in cards])
        agreement = float((got.argmax(1) == expected.argmax(1)).mean())
        gaps = np.abs(got - expected).max(axis=1)
        worst = photos[int(gaps.argmax())].name
        # Every photo within 0.02 (measured: 4e-05 at most, LiteRT.js's float sums against LiteRT's): the page makes the
        # app's pixels byte for byte (tests/test_web_pixels.py), large JPEGs included, which the app decodes at reduced
        # scale with libjpeg-turbo and the page the same way (draft.js).
        assert agreement >= 0.99 and gaps.max() <= 0.02, (agreement, float(gaps.max()), worst)
        novelty = app.outputs(np.stack([load_rgb(p, app.input_size) for p in photos]))[1]
        if novelty is not None:  # the run's novelty check travels with the page: same scores, same flags
            shown = np.array([float(c["novelty"]) for c in cards])
            assert np.abs(shown - novelty).max() <= 0.02, np.abs(shown - novelty).max()
            threshold = page_config(folder)["novelty_threshold"]
            flagged = np.array([c["verdict"] == "unknown" for c in cards])
            assert (flagged == (novelty > threshold)).mean() >= 0.99

        live = camera_frames(page, frames=5)
        on_frame = app.probabilities(load_rgb(frame, app.input_size)[None])[0]
        assert live["top"] == app.class_names[int(on_frame.argmax())]
        # The browser turns the video's YUV into RGB its own way (Pillow's YCbCr is the reference here): a few
        # hundredths apart at most, as the app's own WebRTC decoding would be.
        assert np.abs(np.array(live["probabilities"]) - on_frame).max() <= 0.05, (live, on_frame)
        assert "frames a second" in live["rate"]
        page.evaluate("window.scrollTo(0, 0)")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web-export-page.png"))  # the top: 200 photos make a very long page

        page.fill("#threshold", "100")  # under a 100 % bar every verdict is "not sure", or "not one of your classes"
        page.dispatch_event("#threshold", "input")
        verdicts = page.eval_on_selector_all(".card.photo .bars", "els => els.map(e => e.dataset.verdict)")
        assert set(verdicts) <= {"unsure", "unknown"} and "unsure" in verdicts
        assert "Not sure" in page.inner_text(".card.photo .verdict.unsure")

        page.goto(url + "snippet.html")  # the JavaScript snippet Results shows, beside the page's files
        page.set_input_files("#photo", str(photos[0]))
        page.wait_for_function("document.getElementById('answer').textContent.length > 0", timeout=120_000)
        label, share = page.inner_text("#answer").rsplit(" ", 1)
        assert label == app.class_names[int(expected[0].argmax())]
        assert int(share.rstrip("%")) == round(100 * float(expected[0].max()))
    assert refused == [], f"the page asked for something beyond its own folder: {refused[:3]}"


def test_page_opened_from_disk_says_how_to_serve_it(page_folder):
    _, folder, _ = page_folder
    with browser_page() as page:
        page.goto((folder / "index.html").as_uri())
        note = page.locator("#served-note")
        note.wait_for(state="visible", timeout=30_000)
        assert "python3 -m http.server 8000" in note.inner_text()
        assert page.locator("#app").is_hidden() and page.inner_text("h1") == "Ants or bees"
        screenshot(page, "web-export-from-disk")
