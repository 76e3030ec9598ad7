"""The live webcam in a real browser, fed by Chromium's fake camera: bars that follow the picture on Try it,
and frames recorded into a class on Collect, counted the same there and on Review."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from core.store.project import create_project, open_project
from tests.browser import (assert_no_errors, browser_page, fake_camera_args, loaded_libraries, screenshot,
                           server_pid, streamlit_server, wait_idle, write_y4m)
from tests.photos import add_class_photos, class_photo, class_photo_bytes
from tests.runs import finished_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def trained_workspace(root: Path) -> Path:
    """'shapes': a finished head-only run with head.npz (the fast path); 'recording': one empty class 'me'."""
    project = create_project("shapes", root)
    add_class_photos(project, {"stripes": 12, "rings": 12})
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


LIVE_SECONDS = 60
TENSORFLOW = ("libtensorflow_framework", "_pywrap_tensorflow_internal")  # mapped once Keras (on TensorFlow) is imported


def test_after_a_heat_map_the_live_bars_follow_the_camera_for_a_minute_and_keras_stays_out(app, tmp_path):
    """A newcomer's order: a heat map first, then the live webcam. Once Keras was imported in the server (the heat
    map did), every page run paid for it and the live bars stalled within seconds, then the connection dropped."""
    url, _ = app
    video = write_y4m(tmp_path / "stripes-then-rings.y4m", [class_photo(0, 800, (320, 240)),
                                                             class_photo(1, 801, (320, 240))], size=(320, 240))
    with browser_page(extra_args=fake_camera_args(video)) as page:
        page.goto(f"{url}/predict?project=shapes")
        uploader = page.locator('[data-testid="stFileUploaderDropzoneInput"]')
        uploader.wait_for(state="attached", timeout=180_000)
        uploader.set_input_files(
            files=[{"name": "rings.jpg", "mimeType": "image/jpeg", "buffer": class_photo_bytes(1, 700)}])
        page.get_by_text("Where it looked").wait_for(timeout=180_000)
        server = server_pid(url)
        assert not any(name in loaded_libraries(server) for name in TENSORFLOW), "the heat map loaded Keras"
        assert all(name in loaded_libraries(os.getpid()) for name in TENSORFLOW)  # the check can fail: this test
        # process trained the run with Keras
        screenshot(page, "live-heat-map-first")
        page.locator('[data-testid="stFileChipDeleteBtn"]').first.click()
        page.get_by_text("Where it looked").wait_for(state="detached", timeout=60_000)
        page.get_by_text("Use the webcam").click(timeout=60_000)
        page.get_by_text("bright centre square").wait_for(timeout=60_000)
        start_camera(page)
        bars = page.locator(".st-key-predict_live_bars")
        bars.wait_for(timeout=120_000)
        start_again = page.frame_locator("iframe").first.get_by_role("button", name="Start the camera")
        caption = page.get_by_text(re.compile(r"\d+ pictures? a second · \d+ ms behind the camera"))
        tops: list[tuple[float, str, str]] = []  # (seconds since the bars appeared, top class shown, its caption)
        began = time.time()
        while time.time() - began < LIVE_SECONDS:
            assert not start_again.count(), f"the camera connection dropped after {time.time() - began:.0f} s"
            text = bars.inner_text() if bars.count() else ""  # caught mid-redraw, a read may be partial: skip it
            if top := re.match(r"\s*(rings|stripes) · \d+%", text):
                tops.append((time.time() - began, top.group(1), caption.inner_text() if caption.count() else ""))
            page.wait_for_timeout(250)
        # The video switches class every second. A busy machine can hold the redraws up for a while (seconds at a
        # load average of 15 on two cores), but they must keep coming to the end: before, they stopped for good.
        changes = sum(a[1] != b[1] for a, b in zip(tops, tops[1:]))
        last = {name for at, name, _ in tops if at >= LIVE_SECONDS * 2 / 3}
        assert changes >= 6 and last == {"rings", "stripes"}, (
            f"{changes} changes, the last 20 s showed {last}: {tops[::8]}")
        page.get_by_text(re.compile(r"\d+ pictures? a second · \d+ ms behind the camera")).wait_for()
        assert_no_errors(page)
        screenshot(page, "live-try-it")
        assert not any(name in loaded_libraries(server) for name in TENSORFLOW)


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
