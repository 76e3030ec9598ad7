"""Instant training, as a person meets it: photos uploaded are prepared in the background ("ready to
train"), Train gives a usable model at once, and the downloads follow. Checks the flow, not its
speed (that is `python -m bench.bench_instant`)."""

from __future__ import annotations

import re

import pytest

from core.store.project import create_project
from tests.browser import assert_no_errors, browser_page, new_class, screenshot, streamlit_server, wait_idle
from tests.photos import class_photo_bytes

CLASSES = {"stripes": 0, "blobs": 1}
PER_CLASS = 12
WAIT = 300_000  # ms: generous, the machine may be loaded and the first run converts the backbone


def upload(page, tmp_path, name: str, label: int) -> None:
    """Add PER_CLASS photos to a new class through the Photo files tab."""
    folder = tmp_path / name
    folder.mkdir()
    files = []
    for i in range(PER_CLASS):
        path = folder / f"{name}_{i}.jpg"
        path.write_bytes(class_photo_bytes(label, i))
        files.append(str(path))
    new_class(page, name)
    page.get_by_role("tabpanel").first.locator('input[type="file"]').set_input_files(files)
    page.get_by_role("button", name=f"Add to {name}").click()
    page.get_by_text(f"{PER_CLASS} photos added", exact=False).first.wait_for(timeout=60_000)
    wait_idle(page)


@pytest.mark.slow
@pytest.mark.browser
def test_upload_see_ready_train_and_get_downloads(workspace, tmp_path):
    project = create_project("instant", workspace)
    with streamlit_server(workspace) as url, browser_page(height=1800) as page:
        page.goto(f"{url}/?project={project.name}")
        page.get_by_text(f"Project “{project.name}”", exact=True).wait_for(timeout=60_000)
        page.goto(f"{url}/collect?project={project.name}")
        page.get_by_role("heading", name="Search the web").wait_for(timeout=60_000)
        wait_idle(page)
        for name, label in CLASSES.items():
            upload(page, tmp_path, name, label)

        total = PER_CLASS * len(CLASSES)
        page.get_by_text(f"Ready to train: all {total} photos are prepared", exact=False).wait_for(timeout=WAIT)
        assert_no_errors(page)
        screenshot(page, "instant_collect_ready")

        page.get_by_role("link", name="3 · Train").first.click()
        page.locator(".st-key-train_start button").first.wait_for(timeout=WAIT)
        page.get_by_text(f"Ready to train: all {total} photos", exact=False).wait_for(timeout=60_000)
        wait_idle(page, WAIT)
        page.locator(".st-key-train_start button").first.click()
        page.get_by_text("The model is ready", exact=False).wait_for(timeout=WAIT)
        # Drawn just after the verdict, so wait for it rather than count it at once.
        page.get_by_text(re.compile(r"picked C=|solved at one regularisation strength")).first.wait_for(timeout=WAIT)
        page.get_by_text("Downloads ready", exact=False).wait_for(timeout=WAIT)
        wait_idle(page, WAIT)
        assert_no_errors(page)
        screenshot(page, "instant_train_ready")

        page.get_by_role("link", name="See where it goes wrong, and download the model").click()
        page.locator(".st-key-download_tflite button").first.wait_for(timeout=WAIT)
        wait_idle(page, WAIT)
        assert_no_errors(page)
        with page.expect_download() as download:
            page.locator(".st-key-download_keras button").first.click()
        assert download.value.suggested_filename == "instant-run1.keras"
