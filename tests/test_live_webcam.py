"""The live webcam in a real browser, fed by Chromium's fake camera: bars that follow the picture on Try it,
and frames recorded into a class on Collect, counted the same there and on Review."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from core.store import create_project, open_project
from tests.browser import (assert_no_errors, browser_page, fake_camera_args, screenshot, streamlit_server,
                           wait_idle)
from tests.photos import class_photo_bytes
from tests.runs import finished_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def trained_workspace(root: Path) -> Path:
    """'shapes': a finished head-only run with head.npz (the fast path); 'recording': one empty class 'me'."""
    project = create_project("shapes", root)
    for label, name in enumerate(("stripes", "rings")):
        for seed in range(12):
            project.add_image(name, class_photo_bytes(label, seed), source="upload", original_name=f"{name}{seed}.jpg")
    finished_run(project)
    create_project("recording", root).add_class("me")
    return root


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    root = trained_workspace(tmp_path_factory.mktemp("live"))
    with streamlit_server(root) as url:
        yield url, root


def start_camera(page) -> None:
    """Click the camera widget's own Start button (it lives in the component's iframe)."""
    page.frame_locator("iframe").first.get_by_role("button", name="Start the camera").click(timeout=60_000)


def test_live_bars_follow_the_camera_picture(app):
    url, _ = app
    with browser_page(extra_args=fake_camera_args()) as page:
        page.goto(f"{url}/predict?project=shapes")
        # A heat map first: TensorFlow is then loaded in the server, which must not stop the webcam's WebRTC.
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            files=[{"name": "rings.jpg", "mimeType": "image/jpeg", "buffer": class_photo_bytes(1, 700)}])
        page.get_by_text("Where it looked").wait_for(timeout=180_000)
        page.locator('[data-testid="stFileChipDeleteBtn"]').first.click()
        page.get_by_text("Where it looked").wait_for(state="detached", timeout=60_000)
        page.get_by_text("Use the webcam").click(timeout=60_000)
        page.get_by_text("bright centre square").wait_for(timeout=60_000)
        start_camera(page)
        bars = page.locator(".st-key-predict_live_bars")
        bars.wait_for(timeout=120_000)
        seen, deadline = set(), time.time() + 120
        while len(seen) < 3 and time.time() < deadline:  # the fake camera's picture moves: so must the bars
            text = bars.inner_text() if bars.count() else ""  # caught mid-redraw, a read may be partial: skip it
            if re.search(r"rings · \d+%", text) and re.search(r"stripes · \d+%", text):
                seen.add(text)
            page.wait_for_timeout(200)
        assert len(seen) >= 3, f"the bars did not change: {seen}"
        page.get_by_text(re.compile(r"Looks like|Not sure")).first.wait_for()
        page.get_by_text(re.compile(r"\d+ pictures? a second · \d+ ms behind the camera")).wait_for()
        assert_no_errors(page)
        screenshot(page, "live-try-it")


def test_recorded_frames_land_in_the_class_and_review_agrees(app):
    url, root = app
    with browser_page(extra_args=fake_camera_args()) as page:
        page.goto(f"{url}/collect?project=recording")
        page.get_by_role("tab", name="Webcam").click(timeout=60_000)
        page.get_by_text("Turn on the camera").click()
        start_camera(page)
        page.get_by_role("button", name="Record into me").click(timeout=120_000)
        counter = page.locator(".st-key-collect_record_counter")
        deadline = time.time() + 180
        while time.time() < deadline:
            found = re.search(r"(\d+) frames", counter.inner_text() if counter.count() else "")
            if found and int(found.group(1)) >= 12:
                break
            page.wait_for_timeout(300)
        screenshot(page, "live-collect-recording")
        page.get_by_role("button", name="Stop recording").click()
        page.get_by_text("Recorded:").wait_for(timeout=60_000)
        recorded = int(re.search(r"(\d+) frames", counter.inner_text()).group(1))
        assert recorded >= 12
        assert_no_errors(page)
        records = open_project("recording", root).images("me")
        assert len(records) == recorded and {r.source for r in records} == {"webcam"}

        page.goto(f"{url}/review?project=recording")
        page.get_by_text("Review your photos").wait_for(timeout=60_000)
        kept = page.locator('[data-testid="stMetric"]').filter(has_text="Photos kept")
        kept.wait_for(timeout=60_000)
        assert kept.locator('[data-testid="stMetricValue"]').inner_text().strip() == str(recorded)
        wait_idle(page)
        screenshot(page, "live-review-after-recording")
