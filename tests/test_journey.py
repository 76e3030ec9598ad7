"""The whole newcomer journey in a real browser, against the real server, every CI run.

Create a project, gather photos through the Collect page from a local stand-in for Bing, upload a
zip into another class, reject a photo on the Review page, train with the offline default, see
the curves and the confusion matrix, predict an uploaded photo, download the .keras file and load
it. Screenshots of each step are kept in test-artifacts/ (the README shows them).
"""

from __future__ import annotations

import functools
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from core.store.project import open_project
from tests.bing_standin import BingStandin
from tests.browser import assert_no_errors, browser_page, new_class, screenshot, streamlit_server, wait_idle
from tests.photos import class_photo, class_photo_bytes, zip_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PROJECT = "Shapes"
SEARCHED, ZIPPED = "blobs", "stripes"  # class_photo(1, …) and class_photo(0, …): easy to tell apart
PER_CLASS = 20


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # keep test output readable
        pass


def photo_host(folder: Path) -> ThreadingHTTPServer:
    """A loopback web server for the photos the stand-in's search results point at."""
    for i in range(40):
        class_photo(1, i).save(folder / f"blob_{i}.jpg", quality=90)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stripes_zip() -> bytes:
    return zip_bytes({f"stripe_{i}.jpg": class_photo_bytes(0, 100 + i) for i in range(PER_CLASS)})


def step(page, name: str) -> None:
    """Finish a step: wait for Streamlit, fail on any error box, keep a screenshot."""
    wait_idle(page)
    assert_no_errors(page)
    screenshot(page, name)


def test_a_newcomer_builds_a_classifier(workspace, tmp_path):
    photos_dir = tmp_path / "web"
    photos_dir.mkdir()
    host = photo_host(photos_dir)
    with BingStandin() as standin:
        standin.results[SEARCHED] = [f"http://127.0.0.1:{host.server_address[1]}/blob_{i}.jpg" for i in range(40)]
        env = {"TRANSFERLAB_SEARCH_URL": standin.endpoint, "TRANSFERLAB_ALLOW_PRIVATE_HOSTS": "1"}
        try:
            with streamlit_server(workspace, env=env) as url, browser_page(height=1200) as page:
                walk_through(page, url, workspace, tmp_path)
        finally:
            host.shutdown()


def walk_through(page, url: str, workspace: Path, tmp_path: Path) -> None:
    # 1 · An empty workspace greets the newcomer with three steps; they create a project.
    page.goto(url)
    page.get_by_text("Three steps").wait_for(timeout=60_000)
    step(page, "journey_1_start")
    page.get_by_role("textbox", name="Project name").fill(PROJECT)
    page.get_by_role("button", name="Create project").click()
    page.get_by_text(f"Project “{PROJECT}”", exact=True).wait_for(timeout=30_000)
    wait_idle(page)

    # 2 · Collect: web search for one class, a zip for the other.
    page.goto(f"{url}/collect?project={PROJECT}")
    page.get_by_role("heading", name="Search the web").wait_for(timeout=60_000)
    wait_idle(page)
    page.get_by_role("textbox", name="Class names, one per line").fill(SEARCHED)
    slider = page.get_by_role("slider")
    slider.focus()
    slider.press("Home")  # 5 photos
    for _ in range(3):
        slider.press("ArrowRight")  # 20
    page.get_by_role("button", name="Start searching").click()
    page.get_by_text(f"Done: {PER_CLASS} new photos").wait_for(timeout=120_000)
    step(page, "journey_2_collect_search")

    page.get_by_role("tab", name="Zip file").click()
    new_class(page, ZIPPED)
    archive = tmp_path / f"{ZIPPED}.zip"
    archive.write_bytes(stripes_zip())
    page.get_by_role("tabpanel").locator('input[type="file"]').set_input_files(str(archive))
    page.get_by_role("button", name="Import zip").click()
    page.get_by_text(f"{PER_CLASS} photos added").wait_for(timeout=60_000)
    step(page, "journey_3_collect_zip")

    # 3 · Review: reject one photo (it stays in the project, restorable).
    page.goto(f"{url}/review?project={PROJECT}")
    page.get_by_text("Review your photos").wait_for(timeout=60_000)
    wait_idle(page)
    page.locator('[data-testid="stCheckbox"]').first.click()
    page.get_by_text("1 photo selected").wait_for(timeout=30_000)
    wait_idle(page)
    page.get_by_role("button", name="Reject", exact=True).click()
    wait_idle(page)
    step(page, "journey_4_review")
    assert len(open_project(PROJECT, workspace).images(status="rejected")) == 1

    # 4 · Train with the offline default and watch the curves.
    page.goto(f"{url}/train?project={PROJECT}")
    page.get_by_role("button", name=re.compile("Train")).first.wait_for(timeout=60_000)
    wait_idle(page)
    step(page, "journey_5_train_setup")
    page.get_by_role("button", name=re.compile(r"^\S*\s*Train$")).click()
    page.get_by_text(re.compile("Fitting the new head|Looking at|The model is ready")).first.wait_for(timeout=60_000)
    screenshot(page, "journey_6_training")
    page.get_by_text(re.compile("had never seen")).first.wait_for(timeout=300_000)
    step(page, "journey_7_trained")

    # 5 · Results: confusion matrix, then take the model away.
    page.goto(f"{url}/results?project={PROJECT}")
    page.get_by_text(re.compile("confusion", re.I)).first.wait_for(timeout=60_000)
    step(page, "journey_8_results")
    keras_button = page.get_by_role("button", name=re.compile(r"\.keras")).first
    keras_button.wait_for(timeout=300_000)  # the downloads are assembled just after the model is ready
    with page.expect_download() as download:
        keras_button.click()
    model_path = tmp_path / "model.keras"
    download.value.save_as(model_path)

    # 6 · Try it: an uploaded photo of a blob is recognised as one.
    page.goto(f"{url}/predict?project={PROJECT}")
    page.locator('input[type="file"]').first.wait_for(state="attached", timeout=60_000)
    wait_idle(page)
    upload = tmp_path / "new_blob.jpg"
    class_photo(1, 999).save(upload, quality=90)
    page.locator('input[type="file"]').first.set_input_files(str(upload))
    page.get_by_text(re.compile(f"Looks like {SEARCHED}")).first.wait_for(timeout=120_000)
    page.get_by_text("Working out where the model looked").wait_for(state="detached", timeout=120_000)
    step(page, "journey_9_predict")

    check_downloaded_model(model_path)


def check_downloaded_model(path: Path) -> None:
    """The downloaded file is a complete model that loads safely and knows both classes."""
    import keras
    import numpy as np

    from core.images import load_rgb

    model = keras.saving.load_model(path, safe_mode=True)
    size = model.input_shape[1]
    pixels = np.stack([load_rgb(class_photo(1, 1234), size), load_rgb(class_photo(0, 1234), size)]).astype("float32")
    assert model.predict(pixels, verbose=0)["probabilities"].argmax(axis=1).tolist() == [0, 1]  # labels sorted: blobs, stripes
