"""The Try-it page: pick a finished run, upload photos or a webcam shot, read verdicts, charts and heat maps."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.predict import Prediction, summary_rows
from core.runs import data_from_project, train_and_save
from core.store import create_project
from core.train import TrainConfig
from tests.browser import assert_no_errors, browser_page, screenshot, streamlit_server, wait_idle
from tests.photos import class_photo_bytes

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PROJECT = "shapes"
CLASSES = ("stripes", "rings")  # class_photo(0, ...) draws stripes, class_photo(1, ...) rings


def open_page(project: str = PROJECT) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["project"] = project
    at.switch_page("pages/predict.py")
    return at.run()


def upload(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    at.file_uploader(key="predict_uploads").set_value([(name, data, "image/jpeg") for name, data in files])
    return at.run()


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory) -> Path:
    """A workspace with one project and one small finished run, trained once for the module."""
    root = tmp_path_factory.mktemp("trained")
    project = create_project(PROJECT, root)
    for label, name in enumerate(CLASSES):
        for seed in range(12):
            project.add_image(name, class_photo_bytes(label, seed), source="upload", original_name=f"{name}{seed}.jpg")
    cfg = TrainConfig()
    run_id = project.create_run(cfg.to_dict())
    metrics, _ = train_and_save(data_from_project(project), cfg, project.run_dir(run_id))
    project.update_run(run_id, status="completed", summary=metrics)
    return root


@pytest.fixture
def trained(trained_home, monkeypatch) -> Path:
    monkeypatch.setenv("TRANSFERLAB_HOME", str(trained_home))
    return trained_home


# ---- without a model ---------------------------------------------------------------------------


def test_without_a_finished_run_the_page_points_to_training(project):
    project.create_run({"backbone": "efficientnet_lite0"})  # queued, no model yet: does not count
    at = open_page(project.name)
    assert not at.exception
    assert "Train a model first" in texts(at.info)
    assert [link.proto.page for link in at.get("page_link")] == ["train"]
    assert not at.get("file_uploader")


def test_summary_rows_keep_every_photo_in_order():
    sure = Prediction([("rings", 0.9), ("stripes", 0.1)], {"rings": 0.9, "stripes": 0.1})
    unsure = Prediction([("stripes", 0.55), ("rings", 0.45)], {"rings": 0.45, "stripes": 0.55})
    rows = summary_rows(["a.jpg", "notes.txt", "b.jpg"], [sure, "The file is not an image.", unsure], 0.6)
    assert [(r["file"], r["prediction"], r["verdict"]) for r in rows] == [
        ("a.jpg", "rings", "sure"), ("notes.txt", None, "not read: The file is not an image."),
        ("b.jpg", "stripes", "not sure")]
    assert rows[0]["confidence"] == 0.9 and rows[1]["confidence"] is None


# ---- with a trained model ----------------------------------------------------------------------


@pytest.mark.slow
def test_before_any_upload_the_page_offers_the_latest_run_and_inputs(trained):
    at = open_page()
    assert not at.exception
    assert at.selectbox(key="predict_run").value == 1
    assert "Run 1" in at.selectbox(key="predict_run").format_func(1)
    assert "Upload one or more photos" in texts(at.info)
    assert not at.camera_input  # the camera is only requested after the toggle
    at.session_state["predict_camera_mode"] = "Still photo"  # the live camera needs a real server: browser tests
    at.toggle(key="predict_camera_on").set_value(True).run()
    assert at.camera_input(key="predict_camera")


@pytest.mark.slow
def test_one_photo_gets_a_verdict_a_chart_and_a_heat_map(trained):
    at = upload(open_page(), [("mystery.jpg", class_photo_bytes(0, 500))])
    assert not at.exception and not at.error
    assert texts(at.success).startswith("Looks like **stripes**")
    assert len(at.get("vega_lite_chart")) == 1
    images = at.get("image")
    assert [img.captions for img in images] == [["mystery.jpg"], ["Where it looked"]]
    assert "made the model say **stripes**" in texts(at.caption)
    assert not at.dataframe  # one photo: no summary table


@pytest.mark.slow
def test_a_webcam_photo_is_predicted_like_an_upload(trained):
    at = open_page()
    at.session_state["predict_camera_mode"] = "Still photo"
    at.toggle(key="predict_camera_on").set_value(True).run()
    at.camera_input(key="predict_camera").upload("shot.jpg", class_photo_bytes(1, 501), "image/jpeg")
    at.run()
    assert not at.exception
    assert texts(at.success).startswith("Looks like **rings**")
    assert [img.captions for img in at.get("image")][0] == ["webcam photo"]


@pytest.mark.slow
def test_a_non_image_is_reported_and_the_other_photos_still_predicted(trained):
    at = upload(open_page(), [("stripes.jpg", class_photo_bytes(0, 510)), ("notes.txt", b"not a photo at all"),
                              ("rings.jpg", class_photo_bytes(1, 511))])
    assert not at.exception
    assert len(at.error) == 1 and "notes.txt" in at.error[0].value and "JPEG or PNG" in at.error[0].value
    table = at.dataframe[0].value
    assert list(table["file"]) == ["stripes.jpg", "notes.txt", "rings.jpg"]
    assert list(table["prediction"])[::2] == ["stripes", "rings"]
    assert [e.label.split(" (")[0] for e in at.expander] == ["stripes.jpg — stripes", "rings.jpg — rings"]
    assert len(at.get("vega_lite_chart")) == 2 and len(at.get("image")) == 4  # photo + heat map each
    download = at.get("download_button")[0]
    assert download.proto.label == "Download table (CSV)"


@pytest.mark.slow
def test_the_threshold_decides_between_a_verdict_and_not_sure(trained):
    at = upload(open_page(), [("a.jpg", class_photo_bytes(0, 520)), ("b.jpg", class_photo_bytes(1, 521))])
    at.slider(key="predict_threshold").set_value(50).run()  # with two classes the best guess is always >= 50%
    assert len(at.success) == 2 and not at.warning
    at.slider(key="predict_threshold").set_value(100).run()
    assert not at.success and len(at.warning) == 2
    assert all(w.value.startswith("Not sure") and "below your 100% bar" in w.value for w in at.warning)
    assert set(at.dataframe[0].value["verdict"]) == {"not sure"}


# ---- in a real browser -------------------------------------------------------------------------


def browser_workspace(root: Path) -> None:
    """A project trained on a few real flower photos (flowers5) when present, else on synthetic ones."""
    from core.ingest import import_folder
    from tests.conftest import SHARED_DATASETS

    project = create_project("flowers", root)
    flowers = SHARED_DATASETS / "flowers5" / "train"
    subset = root / "subset"
    if flowers.is_dir():
        for folder in sorted(p for p in flowers.iterdir() if p.is_dir()):
            (subset / folder.name).mkdir(parents=True)
            for photo in sorted(folder.glob("*.jpg"))[:16]:
                shutil.copy(photo, subset / folder.name / photo.name)
    else:
        for label, name in enumerate(CLASSES):
            (subset / name).mkdir(parents=True)
            for seed in range(12):
                (subset / name / f"{seed}.jpg").write_bytes(class_photo_bytes(label, seed))
    import_folder(project, subset)
    cfg = TrainConfig()  # the head is solved on cached embeddings: seconds
    run_id = project.create_run(cfg.to_dict())
    project.update_run(run_id, status="completed",
                       summary=train_and_save(data_from_project(project), cfg, project.run_dir(run_id))[0])


def browser_photos(root: Path, n: int) -> list[Path]:
    """Photos the model has not seen: flowers5's validation photos, or new synthetic ones."""
    from tests.conftest import SHARED_DATASETS

    val = SHARED_DATASETS / "flowers5" / "val"
    if val.is_dir():
        folders = sorted(p for p in val.iterdir() if p.is_dir())
        return [sorted(folders[i % len(folders)].glob("*.jpg"))[i // len(folders)] for i in range(n)]
    paths = [root / f"new{i}.jpg" for i in range(n)]
    for i, path in enumerate(paths):
        path.write_bytes(class_photo_bytes(i % 2, 900 + i))
    return paths


@pytest.mark.slow
@pytest.mark.browser
def test_browser_upload_shows_prediction_heat_map_and_table(workspace):
    browser_workspace(workspace)
    photos = browser_photos(workspace, 5)
    with streamlit_server(workspace) as url, browser_page(height=1100) as page:
        # The first visit goes to the app's root: a deep link as the very first request of a fresh
        # server runs the page without app.py (Streamlit's pages/ folder auto-discovery).
        page.goto(f"{url}/?project=flowers")
        page.get_by_text("Three steps").or_(page.get_by_text("Project “flowers”")).first.wait_for(timeout=60_000)
        page.goto(f"{url}/predict?project=flowers")
        page.get_by_text("Photos to try").wait_for(timeout=60_000)

        single, others = photos[1], [photos[0], *photos[2:]]  # start with a clear dandelion
        page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]', str(single))
        page.get_by_text("Where it looked").first.wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        verdict = page.locator('[data-testid="stAlertContentSuccess"], [data-testid="stAlertContentWarning"]')
        text = verdict.first.inner_text()
        known = ("daisy", "dandelion", "roses", "sunflowers", "tulips") + CLASSES
        assert any(name in text for name in known), text
        assert page.locator('[data-testid="stVegaLiteChart"]').count() == 1
        assert_no_errors(page)
        page.wait_for_timeout(1000)  # let the chart and images paint
        screenshot(page, "predict_single_photo")

        page.set_viewport_size({"width": 1400, "height": 2600})  # Streamlit scrolls inside the page
        page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]', [str(p) for p in others])
        page.get_by_text("Photo by photo").wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        page.wait_for_timeout(1000)  # let the table and charts paint
        assert page.get_by_text("Download table (CSV)").count() == 1
        assert_no_errors(page)
        screenshot(page, "predict_several_photos")
