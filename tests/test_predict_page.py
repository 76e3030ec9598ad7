"""The Try-it page: pick a finished run, upload photos or a webcam shot, read verdicts, charts and heat maps."""

from __future__ import annotations

import io
import json
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.images import unseen_share
from core.model.novelty import NoveltySettings
from core.serving.predict import Arrivals, Bar, Prediction, overlay_heatmap, summary_rows
from core.store.project import create_project
from core.model.train import TrainConfig
from tests.browser import (ARTIFACTS, assert_no_errors, browser_page, fake_camera_args, screenshot, streamlit_server,
                           wait_idle)
from tests.apptest import no_exceptions, open_app
from tests.photos import add_class_photos, class_photo, class_photo_bytes, photo_bytes
from tests.runs import finished_run

PROJECT = "shapes"
CLASSES = ("stripes", "rings")  # class_photo(0, ...) draws stripes, class_photo(1, ...) rings


def open_page(project: str = PROJECT) -> AppTest:
    return open_app(project, "pages/predict.py")


def upload(at: AppTest, files: list[tuple[str, bytes]]) -> AppTest:
    at.file_uploader(key="predict_uploads").set_value([(name, data, "image/jpeg") for name, data in files])
    return at.run()


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def wide_photo_bytes(label: int, seed: int) -> bytes:
    """A class photo twice as wide as high: the model sees only its middle half."""
    buffer = io.BytesIO()
    class_photo(label, seed, size=(400, 200)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def take_webcam_shot(at: AppTest, data: bytes) -> AppTest:
    at.session_state["predict_camera_mode"] = "Still photo"  # the live camera needs a real server: browser tests
    at.toggle(key="predict_camera_on").set_value(True).run()
    at.camera_input(key="predict_camera").upload("shot.jpg", data, "image/jpeg")
    return at.run()


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory) -> Path:
    """A workspace with one project and one small finished run, trained once for the module."""
    root = tmp_path_factory.mktemp("trained")
    project = create_project(PROJECT, root)
    add_class_photos(project, {name: 12 for name in CLASSES})
    finished_run(project)
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
    sure = Prediction([("rings", 0.9), ("stripes", 0.1)], {"rings": 0.9, "stripes": 0.1}, novelty=0.2)
    unsure = Prediction([("stripes", 0.55), ("rings", 0.45)], {"rings": 0.45, "stripes": 0.55})
    foreign = Prediction([("rings", 0.99), ("stripes", 0.01)], {"rings": 0.99, "stripes": 0.01}, novelty=0.7)
    rows = summary_rows(["a.jpg", "notes.txt", "b.jpg", "cat.jpg"],
                        [sure, "The file is not an image.", unsure, foreign], Bar(0.6, novelty=0.5))
    assert [(r["file"], r["prediction"], r["verdict"]) for r in rows] == [
        ("a.jpg", "rings", "sure"), ("notes.txt", None, "not read: The file is not an image."),
        ("b.jpg", "stripes", "not sure"), ("cat.jpg", "rings", "not one of your classes")]
    assert rows[0]["confidence"] == 0.9 and rows[1]["confidence"] is None
    assert Bar(0.6).verdict(foreign) == "sure"  # a run without a novelty check


def test_the_heat_map_covers_the_whole_photo_and_dims_what_the_model_did_not_see():
    photo = Image.new("RGB", (300, 200), (200, 200, 200))
    shown = np.asarray(overlay_heatmap(photo, np.ones((224, 224), np.float32), 0.7), dtype=np.int16)
    assert shown.shape == (200, 300, 3)  # the whole photo, as shown beside it
    left, middle, right = shown[100, 5], shown[100, 150], shown[100, 295]
    assert left.mean() < 120 and right.mean() < 120  # the cut-off strips are dimmed
    assert middle[0] > middle[2] + 60  # the square the model saw glows warm
    inside_edge = shown[100, 60]  # next to the outline, inside the square: the glow, not the outline
    assert inside_edge[0] > inside_edge[2] + 60
    assert unseen_share((300, 200)) == pytest.approx(1 / 3) and unseen_share((200, 200)) == 0


def test_a_square_photo_is_not_dimmed_anywhere():
    photo = Image.new("RGB", (200, 200), (200, 200, 200))
    shown = np.asarray(overlay_heatmap(photo, np.zeros((224, 224), np.float32), 0.7), dtype=np.int16)
    assert shown.shape == (200, 200, 3) and np.abs(shown - 200).max() <= 2  # no heat, nothing cut off


def test_arrivals_put_the_newest_first_keep_a_batch_in_order_and_drop_copies():
    arrivals = Arrivals()
    a, b, c, d = (("a", b"1"), ("b", b"2"), ("c", b"3"), ("d", b"4"))
    assert arrivals.arrange([a, b, c]) == ([a, b, c], [])
    assert arrivals.arrange([a, b, c, d]) == ([d, a, b, c], [])  # d came last: on top
    assert arrivals.arrange([a, b, c, d, ("a again", b"1")]) == ([d, a, b, c], [("a again", "a")])
    assert arrivals.arrange([b, c, d]) == ([d, b, c], [])
    assert arrivals.arrange([b, c, d, a]) == ([a, d, b, c], [])  # taken off and added again: new


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
    assert images[0].captions == ["mystery.jpg"] and images[1].captions[0].startswith("Where it looked")
    assert "made the model say **stripes**" in texts(at.caption)
    assert not at.dataframe  # one photo: no summary table


@pytest.mark.slow
def test_a_webcam_photo_is_predicted_like_an_upload(trained):
    at = take_webcam_shot(open_page(), class_photo_bytes(1, 501))
    assert not at.exception
    assert texts(at.success).startswith("Looks like **rings**")
    assert at.get("image")[0].captions[0].startswith("webcam photo")


@pytest.mark.slow
def test_the_heat_map_says_the_model_saw_only_the_middle_of_a_wide_photo(trained):
    at = upload(open_page(), [("wide.jpg", wide_photo_bytes(0, 530))])
    assert not at.exception and not at.error
    heat = at.get("image")[1].captions[0]
    assert heat.startswith("Where it looked") and "square" in heat and "50%" in heat and "dimmed" in heat
    at = upload(at, [("square.jpg", class_photo_bytes(0, 531))])  # 200 x 160 is near square: still cut off
    assert "dimmed" in at.get("image")[1].captions[0]


@pytest.mark.slow
def test_a_webcam_shot_lands_at_the_top_open_and_earlier_shots_stay(trained):
    at = upload(open_page(), [("a.jpg", class_photo_bytes(0, 540)), ("b.jpg", class_photo_bytes(0, 541)),
                              ("c.jpg", class_photo_bytes(1, 542)), ("d.jpg", class_photo_bytes(0, 543))])
    at = take_webcam_shot(at, class_photo_bytes(1, 544))
    assert not at.exception
    labels = [e.label for e in at.expander]
    assert labels[0].startswith("webcam photo") and at.expander[0].proto.expanded
    assert [label.split(" —")[0] for label in labels[1:]] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]  # uploads in order
    assert list(at.dataframe[0].value["file"])[0].startswith("webcam photo")
    for chart, label in zip(at.get("vega_lite_chart"), labels):  # each chart carries its photo's order of classes:
        encoding = json.loads(chart.proto.spec)["layer"][0]["encoding"]  # the browser reuses a chart moved down
        assert encoding["y"]["sort"][0] == label.split(" — ")[1].split(" (")[0]
    at.camera_input(key="predict_camera").upload("shot.jpg", class_photo_bytes(0, 545), "image/jpeg")
    at.run()  # a second shot: the newest first, the first one kept below it
    files = list(at.dataframe[0].value["file"])
    assert len(files) == 6 and files[0].startswith("webcam photo") and files[1].startswith("webcam photo")
    assert files[0] != files[1]
    at.button(key="predict_forget_shots").click().run()
    at.run()  # the camera still holds its last shot: it must not come back
    assert list(at.dataframe[0].value["file"]) == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]


@pytest.mark.slow
def test_the_same_photo_added_twice_counts_once_and_the_user_is_told(trained):
    a, b = class_photo_bytes(0, 550), class_photo_bytes(1, 551)
    at = upload(open_page(), [("a.jpg", a), ("b.jpg", b), ("a copy.jpg", a)])
    assert not at.exception and not at.error
    assert "**2 photos**" in texts(at.markdown)
    assert list(at.dataframe[0].value["file"]) == ["a.jpg", "b.jpg"]
    assert len(at.expander) == 2
    told = texts(at.info).lower()
    assert "a copy.jpg" in told and "a.jpg" in told and "already" in told


@pytest.mark.slow
def test_a_run_has_the_same_label_on_try_it_train_and_results(trained):
    from core.store.project import open_project

    project = open_project(PROJECT, trained)
    with project.db.write() as con:  # started two hours before it finished: the label must not hesitate
        con.execute("UPDATE runs SET created = finished - 7200 WHERE id = 1")
    run = project.run(1)
    started = datetime.fromtimestamp(run.created).strftime("%H:%M")
    label = open_page().selectbox(key="predict_run").format_func(1)
    assert label.startswith("Run 1 ·") and started in label
    train = no_exceptions(open_app(PROJECT, "pages/train.py"))
    assert label in [c.value for c in train.caption] + [m.value for m in train.markdown]
    results = no_exceptions(open_app(PROJECT, "pages/results.py"))
    assert results.selectbox(key="results_run").format_func(1) == label


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


def constant_run(root: Path, name: str, probabilities: tuple[float, float], fine_tuned: bool = False) -> Path:
    """A project whose one finished run answers `probabilities` for every photo (a head of zeros and a bias of their
    logarithms); `fine_tuned`: saved as a fine-tuning run leaves it, model.keras and no LiteRT file yet."""
    from core.model.backbones import get_backbone
    from core.serving.export import save_keras, write_json
    from core.model.head import HEAD_FILE, LinearHead

    project = create_project(name, root)
    for label, class_name in enumerate(CLASSES):
        project.add_image(class_name, class_photo_bytes(label, 0), source="upload", original_name="a.jpg")
    run_id = project.create_run(TrainConfig().to_dict())
    run_dir = project.run_dir(run_id)
    head = LinearHead(np.zeros((get_backbone("efficientnet_lite0").feature_dim, 2), np.float32),
                      np.log(np.asarray(probabilities, np.float32)))
    (run_dir / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    if fine_tuned:
        from core.model.train import assemble_classifier

        save_keras(assemble_classifier(get_backbone("efficientnet_lite0"), head), run_dir / "model.keras")
    else:
        head.save(run_dir / HEAD_FILE)
    summary = {"backbone": "efficientnet_lite0", "classes": list(CLASSES), "val_accuracy": 1.0, "val_images": 2,
               "unfreeze_blocks": 2 if fine_tuned else 0}
    write_json(run_dir / "metrics.json", summary)
    project.update_run(run_id, status="completed", summary=summary)
    return run_dir


@pytest.fixture
def worker_tasks(monkeypatch) -> list[tuple[str, dict]]:
    """What the page asks of the training worker, recorded instead of sent."""
    from core.jobs import server

    asked = []
    monkeypatch.setattr(server.WORKER, "submit", lambda task, project, **fields: asked.append((task, fields)) or 0)
    return asked


@pytest.mark.slow
def test_a_share_just_below_the_bar_is_not_rounded_up_to_it(workspace, worker_tasks):
    """59.8% used to read "(60%), below your 60% bar"."""
    constant_run(workspace, "close call", (0.598, 0.402))
    at = upload(open_page("close call"), [("a.jpg", class_photo_bytes(0, 560))])
    assert not at.exception
    assert texts(at.warning) == "Not sure — its best guess is **stripes** (59.8%), below your 60% bar"
    at.slider(key="predict_threshold").set_value(55).run()
    assert texts(at.success) == "Looks like **stripes** (60%)"


@pytest.mark.slow
def test_a_fine_tuned_run_is_tried_from_litert_files_the_worker_makes(workspace, worker_tasks):
    """The page never loads Keras: a fine-tuned run waits (a few seconds) for the worker's heatmap.tflite, which
    gives its verdicts and its heat maps."""
    from core.serving.heatmap import RUN_MAP_FILE, prepare

    run_dir = constant_run(workspace, "tuned", (0.9, 0.1), fine_tuned=True)
    at = upload(open_page("tuned"), [("a.jpg", class_photo_bytes(0, 570))])
    assert not at.exception and not at.error
    assert "Getting this fine-tuned model ready" in texts(at.info) and not at.success
    assert ("heatmap", {"run": 1}) in worker_tasks
    prepare(run_dir)  # what the worker does
    assert (run_dir / RUN_MAP_FILE).exists()
    at.run()
    assert not at.exception and not at.error
    assert texts(at.success) == "Looks like **stripes** (90%)"
    assert at.get("image")[1].captions[0].startswith("Where it looked")


@pytest.mark.slow
def test_a_photo_unlike_every_class_is_said_to_be_so_and_the_setting_stays_with_the_run(trained):
    at = upload(open_page(), [("stranger.jpg", photo_bytes(3)), ("a.jpg", class_photo_bytes(0, 530))])
    assert not at.exception
    strange = [w.value for w in at.warning if "look like any of your classes" in w.value]
    assert len(strange) == 1 and "Closest:" in strange[0]
    verdicts = dict(zip(at.dataframe[0].value["file"], at.dataframe[0].value["verdict"]))
    assert verdicts == {"stranger.jpg": "not one of your classes", "a.jpg": "sure"}
    run_dir = next(trained.glob("*/runs/*/novelty.json")).parent
    before = NoveltySettings.load(run_dir)
    try:
        at.select_slider(key=f"predict_novelty_{run_dir.name}").set_value(0.2).run()
        after = NoveltySettings.load(run_dir)  # kept with the run, for every page, the CLI and the downloads
        assert after.threshold < before.threshold and after.false_alarms() <= 0.2
        assert not at.exception
    finally:
        before.save(run_dir)


# ---- in a real browser -------------------------------------------------------------------------


def browser_workspace(root: Path) -> None:
    """A project trained on a few real flower photos (flowers5) when present, else on synthetic ones."""
    from core.intake.ingest import import_folder
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
    finished_run(project)  # the head is solved on cached embeddings: seconds


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
        page.get_by_text("Three steps").or_(page.get_by_text("Project “flowers”", exact=True)).first.wait_for(timeout=60_000)
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


def image_ratios(scope) -> list[float]:
    """Width / height of the photo and the heat map in `scope`, as the browser decoded them."""
    images = scope.locator('[data-testid="stImage"] img')
    images.nth(1).wait_for(timeout=120_000)
    ratio = "img => img.decode().then(() => img.naturalWidth / img.naturalHeight)"
    return [img.evaluate(ratio) for img in images.all()]


@pytest.mark.slow
@pytest.mark.browser
def test_browser_heat_map_lies_over_the_photo_beside_it_and_a_webcam_shot_comes_first(workspace):
    browser_workspace(workspace)
    photos = browser_photos(workspace, 2)
    # tall enough that nothing scrolls inside the page (Streamlit does), so the screenshots show it all
    with streamlit_server(workspace) as url, browser_page(height=2400, extra_args=fake_camera_args()) as page:
        page.goto(f"{url}/?project=flowers")
        page.get_by_text("Three steps").or_(page.get_by_text("Project “flowers”", exact=True)).first.wait_for(timeout=60_000)
        page.goto(f"{url}/predict?project=flowers")
        page.get_by_text("Photos to try").wait_for(timeout=60_000)
        page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]', [str(p) for p in photos])
        page.get_by_text("Photo by photo").wait_for(timeout=120_000)
        page.get_by_text("Where it looked").first.wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        expanders = page.locator('[data-testid="stMain"] [data-testid="stExpander"]')  # not the sidebar's
        first = expanders.first
        photo, heat = image_ratios(first)
        assert photo != pytest.approx(1, abs=0.02), "the test needs a photo that is not square"
        assert heat == pytest.approx(photo, rel=0.02), "the heat map is not drawn on the photo shown beside it"
        assert first.get_by_text("dimmed").count() >= 1
        assert_no_errors(page)
        page.wait_for_timeout(1000)  # let the charts and images paint
        screenshot(page, "tryit-two-photos")
        first.screenshot(path=str(ARTIFACTS / "tryit-heat-map.png"))

        page.set_input_files('[data-testid="stFileUploaderDropzoneInput"]', str(photos[0]))  # the same file again
        page.get_by_text("Already in the list, so shown once").wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        assert page.get_by_text("2 photos").count() == 1 and expanders.count() == 2
        expanders.nth(1).get_by_text("Where it looked").wait_for(timeout=120_000)
        page.wait_for_timeout(1000)  # let the charts paint
        screenshot(page, "tryit-same-photo-twice")

        page.set_viewport_size({"width": 1400, "height": 3800})
        page.get_by_text("Use the webcam").click()
        page.get_by_role("radio", name="Still photo").click()
        page.wait_for_function(  # the fake camera's first frames are black: shoot once its picture moves
            "() => { const v = document.querySelector('[data-testid=\"stCameraInput\"] video');"
            " return v && v.readyState >= 2 && v.currentTime > 1; }", timeout=60_000)
        page.get_by_role("button", name="Take Photo").click(timeout=60_000)
        expanders.first.get_by_text("webcam photo").first.wait_for(timeout=120_000)
        wait_idle(page, 120_000)
        expanders.first.get_by_text("Where it looked").first.wait_for(timeout=120_000)  # open: its heat map is shown
        expanders.nth(2).wait_for(timeout=60_000)  # the two uploads below it
        page.wait_for_timeout(1000)
        screenshot(page, "tryit-webcam-shot-first")
        assert_no_errors(page)
        assert expanders.count() == 3
