"""The Train and Results pages: settings, background runs (start, refuse, stop, re-attach, fail), results, export.

Page tests use AppTest; the runs are real worker processes on a small synthetic project. The browser
test drives the real server on the flowers5 photos and leaves screenshots in test-artifacts/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import types
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.model import advice
from core.model.advice import MEASURED

from core.jobs import api as jobs  # what the pages call (monkeypatched here)
from core import config
from core.jobs.server import ANSWERS

from core.model import speed
from core.model.backbones import DEFAULT_BACKBONE, REGISTRY, BackboneSpec, get_backbone
from core.model.joined import OFFERED, RECOMMENDED
from core.model.freeze_depths import freeze_options
from core.serving.export import EVALUATION_FILE, write_json
from core.serving.predict import MODEL_FILE
from core.intake.ingest import import_folder
from core.store.project import Project, create_project
from core.model.schedule import automatic_epochs, automatic_rate
from core.model.train import STAGE_FINETUNE, STAGE_HEAD, STAGE_REFIT, TrainConfig
from tests.apptest import no_exceptions, open_app
from tests.browser import assert_no_errors, browser_page, screenshot, streamlit_server, wait_idle
from tests.conftest import shared_dataset
from tests.photos import add_class_photos, class_photo_bytes
from tests.runs import finished_run
from pages.train_text import depth_short, progress_text, short_label, stages_line

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("stripes", "blobs")
RUN_TIMEOUT = 300


@pytest.fixture
def two_classes(project: Project) -> Project:
    """15 photos in each of two classes that a frozen backbone tells apart easily."""
    add_class_photos(project, {name: 15 for name in CLASSES})
    project.set_val_share(0.3)
    return project


def page(project: Project, path: str = "pages/train.py") -> AppTest:
    """A fresh browser session on a page of the app, with the project picked."""
    return open_app(project.name, path)


def texts(at: AppTest) -> str:
    """Everything the page wrote, as one string to search."""
    parts = [e.value for kind in ("markdown", "caption", "success", "info", "warning", "error", "subheader")
             for e in at.get(kind)]
    return "\n".join(str(p) for p in parts)


def wait_until_done(project: Project, run_id: int) -> None:
    deadline = time.time() + RUN_TIMEOUT
    while jobs.refresh(project, run_id).status in jobs.ACTIVE:
        assert time.time() < deadline, f"run {run_id} still going after {RUN_TIMEOUT} s"
        time.sleep(1)


# ---- the Train page, without training -------------------------------------------------------------


def test_settings_start_from_the_defaults_and_show_what_will_train(two_classes):
    at = no_exceptions(page(two_classes))
    defaults = TrainConfig()
    assert at.selectbox(key="train_backbone").value == DEFAULT_BACKBONE
    assert at.select_slider(key="train_unfreeze_blocks").value == 0
    assert at.number_input(key="train_finetune_epochs").value == defaults.finetune_epochs
    assert at.number_input(key="train_finetune_epochs").disabled  # the head is solved: no epochs to set
    assert at.select_slider(key="train_finetune_learning_rate").value == defaults.finetune_learning_rate
    assert "only the new head" in texts(at)
    assert not at.button(key="train_start").disabled
    backbones = at.dataframe[0].value
    assert list(backbones["Network"]) == [*(spec.label for spec in REGISTRY.values()),
                                          *(get_backbone(name).label for name in OFFERED)]
    assert "🌐 needs internet" in set(backbones["Available"])

    at.select_slider(key="train_unfreeze_blocks").set_value(2).run()
    shown = texts(at)
    assert "the last 2 blocks + the head" in shown and "the run keeps the head" in shown
    advice = at.dataframe[2].value.set_index(["Network", "Retrain"])  # a row per offline network and depth
    depths = ["head only", "last 1", "last 2", "last 3", "last 4"]
    assert list(advice.index) == [(network, depth) for network in ("Lite0", "Lite1", "Lite2") for depth in depths]
    assert all(time.startswith("~") for time in advice["Time here"])
    # every gain measured (core.model.advice.MEASURED) is in its row, and only those
    for (name, blocks), measured in MEASURED.items():
        row = advice.loc[(short_label(name), depth_short(blocks))]
        reference = (name, blocks) == (DEFAULT_BACKBONE, 0)
        for column, gain in (("Gain: everyday photos", measured.everyday), ("Gain: unlike them", measured.unlike)):
            assert row[column] == ("the reference" if reference else "not measured" if gain is None else
                                   "no gain" if gain == 0 else f"{gain:+.1f} pts")
    unmeasured = advice.drop(index=[(short_label(name), depth_short(blocks)) for name, blocks in MEASURED])
    assert set(unmeasured[["Gain: everyday photos", "Gain: unlike them"]].stack()) == {"not measured"}
    assert not at.number_input(key="train_finetune_epochs").disabled


def test_a_joined_network_shows_its_costs_and_trains_the_head_only(two_classes, monkeypatch):
    monkeypatch.setattr(jobs, "prepare", lambda project: None)  # no background embedding with the real networks here
    at = page(two_classes)
    at.select_slider(key="train_unfreeze_blocks").set_value(2).run()
    assert at.selectbox(key="train_backbone").options[len(REGISTRY)] == \
        f"{get_backbone(RECOMMENDED).label} (recommended joined)"
    at.selectbox(key="train_backbone").set_value(RECOMMENDED).run()
    no_exceptions(at)
    assert two_classes.backbone == RECOMMENDED  # the project's photos are prepared with it from now on
    shown = texts(at)
    head = get_backbone(RECOMMENDED).feature_dim * 2 + 2
    assert f"Training will change **only the new head**: 1 layer, {head:,} parameters." in shown
    assert "retraining their blocks is not offered" in shown
    assert not at.get("select_slider") or "train_unfreeze_blocks" not in [w.key for w in at.get("select_slider")]
    costs = at.dataframe[1].value.set_index("")  # after the table of networks; a column per choice
    assert list(costs.columns) == ["Lite0", "Lite0 + Lite1 + Lite2", "Lite0 + Lite2"]  # the recommended one first
    assert {"Preparing 30 photos", "Try it, per photo", "Live webcam, pictures a second", "Model size",
            "A download, at most"} <= set(costs.index)
    # every choice's column holds its own measured figures (core.model.advice: CHOICES_MEASURED, GAINS_BY_PHOTOS),
    # the gains at the photos a class measured nearest 30 photos in 2 classes (12 to train on each): 10
    for choice in (DEFAULT_BACKBONE, *OFFERED):
        label = short_label(choice)
        try_ms, live_fps = advice.CHOICES_MEASURED[choice]
        assert costs.loc["Try it, per photo", label] == f"~{try_ms:.0f} ms"
        assert costs.loc["Live webcam, pictures a second", label] == f"~{live_fps:.0f}"
        for (name, _), curve in zip(advice.MEASURED_SETS, advice.GAINS_BY_PHOTOS.get(choice, ((),) * 3)):
            assert costs.loc[f"Gain: {name}", label] == ("the reference" if choice == DEFAULT_BACKBONE else
                                                         f"{dict(curve)[10]:+.1f} pts")
    assert "whose number of classes is nearest yours (ants vs bees, 2 classes, trained on 10 photos a class)" in shown
    assert "trained on 10 photos a class: the count measured nearest your project's" in shown
    live = next(r for r in advice.costs(30, {}) if r.backbone == RECOMMENDED).live_fps
    assert f"the live webcam shows about {live:.0f} pictures a second" in shown
    started = []
    monkeypatch.setattr(jobs, "start_training", lambda project, cfg: started.append(cfg))
    at.button(key="train_start").click().run()
    no_exceptions(at)
    assert [(cfg.backbone, cfg.unfreeze_blocks) for cfg in started] == [(RECOMMENDED, 0)]


def test_the_learning_rate_is_automatic_unless_chosen_and_says_what_it_picks_here(two_classes, monkeypatch):
    at = no_exceptions(page(two_classes))
    rate = at.select_slider(key="train_finetune_learning_rate")
    assert rate.value is None and rate.options[0] == "Automatic"
    photos = sum(c.train for c in two_classes.classes())
    assert f"Automatic picks {automatic_rate(photos):g} for this project's {photos:,} training photos" in texts(at)
    started = []
    monkeypatch.setattr(jobs, "start_training", lambda project, cfg: started.append(cfg))
    at.select_slider(key="train_unfreeze_blocks").set_value(2).run()
    at.button(key="train_start").click().run()
    at.select_slider(key="train_finetune_learning_rate").set_value(3e-4).run()
    at.button(key="train_start").click().run()
    no_exceptions(at)
    assert [(cfg.unfreeze_blocks, cfg.finetune_learning_rate) for cfg in started] == [(2, None), (2, 3e-4)]


def test_the_epochs_are_automatic_unless_chosen_and_say_what_they_pick_here(two_classes, monkeypatch):
    at = no_exceptions(page(two_classes))
    epochs = at.number_input(key="train_finetune_epochs")
    photos = sum(c.train for c in two_classes.classes())
    assert epochs.value is None and epochs.proto.placeholder == f"Automatic ({automatic_epochs(photos)})"
    assert f"automatic: {automatic_epochs(photos)} for this project's {photos:,} training photos" in texts(at)
    started = []
    monkeypatch.setattr(jobs, "start_training", lambda project, cfg: started.append(cfg))
    at.select_slider(key="train_unfreeze_blocks").set_value(2).run()
    at.button(key="train_start").click().run()
    at.number_input(key="train_finetune_epochs").set_value(5).run()
    at.button(key="train_start").click().run()
    no_exceptions(at)
    assert [cfg.finetune_epochs for cfg in started] == [None, 5]


def test_validation_share_is_saved_in_the_project(two_classes):
    at = page(two_classes)
    at.slider(key="train_val_share").set_value(40).run()
    assert two_classes.val_share == pytest.approx(0.4)


def test_one_class_is_not_enough_and_says_where_to_go(project):
    project.add_image("cats", class_photo_bytes(0, 1), source="upload")
    at = no_exceptions(page(project))
    assert "two classes with photos" in texts(at)
    assert at.button(key="train_start").disabled
    assert {link.label for link in at.get("page_link")} >= {"Collect photos", "Review the dataset"}


def test_train_starts_before_the_page_is_drawn_again_and_says_so_at_once(two_classes, monkeypatch):
    """Item 9 of issue 20: the click's run drew the whole page before starting the run (~1.7 s with nothing in view
    changing); now the button's callback hands the run over first, and a toast says so wherever the user is."""
    at = page(two_classes)
    calls = []
    real_active = jobs.active_run
    monkeypatch.setattr(jobs, "active_run", lambda project: calls.append("page") or real_active(project))
    monkeypatch.setattr(jobs, "start_training", lambda project, cfg: calls.append("start") or 12)
    at.button(key="train_start").click().run()
    no_exceptions(at)
    assert calls[0] == "start", calls  # before the page's first look at the runs
    assert [t.value for t in at.toast] == ["Training started (run 12)."]


def test_a_class_without_training_photos_is_refused_clearly(two_classes):
    for seed in range(100, 200):  # one photo whose place, fixed by its content, is in validation
        added = two_classes.add_image("tiny", class_photo_bytes(0, seed), source="upload")
        if two_classes.image(added.image_id).split == "val":
            break
        two_classes.delete_images([added.image_id])
    at = page(two_classes)
    at.button(key="train_start").click().run()
    assert "no training photos: tiny" in at.error[0].value.replace("\\", "")  # shown as plain text
    assert {link.label for link in at.get("page_link")} >= {"Collect photos", "Review the dataset"}
    assert not two_classes.runs()


@pytest.fixture
def stand_in_timing(monkeypatch, tmp_path) -> Path:
    """The worker times networks by their size without building them (`speed.STANDIN_ENV`), into a cache of this
    test's own; the folder returned holds its hold-/fail- files."""
    monkeypatch.setenv("TRANSFERLAB_CACHE", str(tmp_path / "cache"))  # the made-up timings stay out of the shared cache
    folder = tmp_path / "timing"
    folder.mkdir()
    monkeypatch.setenv(speed.STANDIN_ENV, str(folder))
    return folder


def test_speed_is_measured_on_demand_in_the_worker_and_shown_relative(two_classes, stand_in_timing):
    at = page(two_classes)
    assert set(at.dataframe[0].value["Speed here"]) == {"not measured"}
    at.button(key="measure_speed").click().run()
    assert jobs.measuring().wait(RUN_TIMEOUT)
    table = no_exceptions(page(two_classes)).dataframe[0].value.set_index("Network")  # after a refresh too
    assert table.loc["MobileNetV2", "Speed here"].endswith(" ms (fastest)")
    assert table.loc["ResNet-50", "Speed here"].endswith(" ms (10.4×)")
    assert {entry["engine"] for entry in speed.cached_speeds().values()} == {speed.STANDIN_ENGINE}  # the worker's
    assert set(speed.cached_speeds()) == set(REGISTRY)
    assert not list((config.cache_dir() / ANSWERS).iterdir())  # every answer read and removed


def wait_until(condition, what: str) -> None:
    deadline = time.time() + RUN_TIMEOUT
    while not condition():
        assert time.time() < deadline, what
        time.sleep(0.05)


def test_speed_is_measured_in_the_background_one_timing_at_a_time(two_classes, stand_in_timing):
    first, *others = REGISTRY
    for name in others:
        (stand_in_timing / f"hold-{name}").touch()
    (stand_in_timing / "fail-convnext_tiny").write_text("not enough memory")
    at = page(two_classes)
    at.button(key="measure_speed").click().run()  # returns at once: the timing runs on its own
    assert no_exceptions(at).button(key="measure_speed").disabled
    fresh = no_exceptions(page(two_classes))  # a refresh, or a second tab
    assert fresh.button(key="measure_speed").disabled and fresh.button(key="stop_measuring")
    wait_until(lambda: speed.cached_speeds(), "the first network was never timed")
    assert list(speed.cached_speeds()) == [first]  # the next waits: one network at a time
    assert "Timing " in no_exceptions(page(two_classes)).get("progress")[0].proto.text
    table = page(two_classes).dataframe[0].value.set_index("Network")
    assert table.loc[REGISTRY[first].label, "Speed here"] != "not measured"
    for name in others:
        (stand_in_timing / f"hold-{name}").unlink()
    assert jobs.measuring().wait(RUN_TIMEOUT)
    done = no_exceptions(page(two_classes))
    assert "ConvNeXt-Tiny could not be timed: MemoryError: not enough memory" in texts(done)
    assert not done.button(key="measure_speed").disabled
    assert set(speed.cached_speeds()) == set(REGISTRY) - {"convnext_tiny"}
    assert "estimated from a reference laptop" not in texts(done)  # the advice uses the figures measured here


def test_a_timing_can_be_stopped_between_networks(two_classes, stand_in_timing):
    for name in REGISTRY:
        (stand_in_timing / f"hold-{name}").touch()
    at = page(two_classes)
    at.button(key="measure_speed").click().run()
    at.button(key="stop_measuring").click().run()
    assert "Stopping after the network being timed" in texts(no_exceptions(at))
    for name in REGISTRY:
        (stand_in_timing / f"hold-{name}").unlink()
    assert jobs.measuring().wait(RUN_TIMEOUT)
    assert len(speed.cached_speeds()) == 1
    assert "Timing stopped" in texts(no_exceptions(page(two_classes)))


@pytest.mark.slow
def test_timing_a_network_imports_no_keras_in_the_server(tmp_path):
    """The server runs the Train page: once Keras is imported there, every page run pays for it (issue 20). The
    timing, real here (random weights, LiteRT), happens in the worker."""
    script = ("import sys; from core.jobs.timing import start_measuring; from core.jobs.server import WORKER; "
              "from core.model.speed import cached_speeds; from core.model.backbones import REGISTRY; "
              "task = start_measuring([REGISTRY['mobilenet_v2']]); assert task.wait(600); "
              "assert task.view().result == {}, task.view(); WORKER.shutdown(); "
              "print(cached_speeds()['mobilenet_v2']['engine'], "
              "sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TRANSFERLAB_CACHE": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "LiteRT []"


def test_the_first_visit_builds_no_network(two_classes, monkeypatch):
    def no_build(self, weights=True):
        raise AssertionError(f"{self.name} was built on a page visit")

    monkeypatch.setattr(BackboneSpec, "build", no_build)
    at = no_exceptions(page(two_classes))
    for name in REGISTRY:
        at.selectbox(key="train_backbone").set_value(name).run()
        assert at.select_slider(key="train_unfreeze_blocks").options[-1] == f"last {len(freeze_options(name)) - 1}"
        no_exceptions(at.select_slider(key="train_unfreeze_blocks").set_value(2).run())
        assert "Training will change **the last 2 blocks + the head**" in texts(at)


def test_a_second_run_is_refused_when_one_started_elsewhere(two_classes, monkeypatch):
    at = page(two_classes)  # drawn while nothing ran; then another tab starts a run

    def refuse(project, cfg):
        raise jobs.JobRefused("Run 7 is still training. Stop it or wait for it to finish first.")

    monkeypatch.setattr(jobs, "start_training", refuse)
    at.button(key="train_start").click().run()
    assert "Run 7 is still training" in no_exceptions(at).error[0].value


def test_a_run_whose_fine_tuning_won_says_so(two_classes):
    """It used to say only "76%": that the retrained network beat the head was left unsaid."""
    run_id = two_classes.create_run(TrainConfig(unfreeze_blocks=2).to_dict())
    run_dir = two_classes.run_dir(run_id)
    for name in ("model.keras", "model.tflite", "model_quant.tflite"):  # its downloads are made: nothing to wait for
        (run_dir / name).write_bytes(b"")
    for i, strength in enumerate((0.1, 1.0)):
        two_classes.add_epoch(run_id, "head", i + 1, {"C": strength, "cv_accuracy": 0.7, "cv_loss": 0.6,
                                                      "val_accuracy": 0.7 if strength == 1.0 else 0.6, "val_loss": 0.6})
    for epoch in range(1, 7):
        two_classes.add_epoch(run_id, "fine-tuning", epoch, {"accuracy": 0.8, "loss": 0.4, "val_accuracy": 0.76,
                                                          "val_loss": 0.5})
    two_classes.update_run(run_id, status="completed", summary={
        "val_accuracy": 0.76, "val_images": 25, "classes": list(CLASSES), "backbone": DEFAULT_BACKBONE,
        "unfreeze_blocks": 2, "best_epoch": {"head": 0, "fine-tuning": 3}, "finetune_kept_head": False, "head_C": 1.0,
        "train_seconds": 90, "finetune_refit_epochs": 3, "test_time_zoom": True})
    at = no_exceptions(page(two_classes))
    assert ("Retraining the last 2 blocks of the network paid off: it beat the new head alone on the validation "
            "photos (70% with the new head alone, 76% retrained), best after epoch 3 of 6. The retrained network is "
            "the model kept, then trained for 3 epochs more on all your photos, the validation photos too. It judges "
            "each photo four ways, as it is, mirrored and both zoomed in on the middle, and averages them: that was "
            "clearly better on your validation photos.") in texts(at)
    assert "Then it learned them too" in texts(at), "its score is from before it learned the validation photos"


def test_training_again_on_every_photo_is_a_step_of_its_own_with_its_epochs_counted_exactly():
    progress = {"epoch": 2, "epochs": 5, "batch": 1, "batches": 4, "eta_seconds": 30.0, "fraction": 0.3,
                "written": time.time()}
    assert progress_text({**progress, "stage": STAGE_REFIT}).startswith("Epoch 2 of 5 · about ")
    assert progress_text({**progress, "stage": STAGE_FINETUNE}).startswith("Epoch 2 of at most 5 · at most about ")
    run = types.SimpleNamespace(config=TrainConfig(unfreeze_blocks=2).to_dict())
    assert stages_line(run, STAGE_REFIT).endswith("✅ 3. Fine-tuning the network → ⏳ 4. Learning every photo")
    assert "Learning every photo" not in stages_line(types.SimpleNamespace(config=TrainConfig().to_dict()), STAGE_HEAD)


def test_a_failed_run_shows_its_error_not_a_spinner(two_classes):
    run_id = two_classes.create_run(TrainConfig().to_dict())
    two_classes.update_run(run_id, status="failed", error="RuntimeError: the disk is full\nTraceback…")
    at = no_exceptions(page(two_classes))
    assert "the disk is full" in at.error[0].value
    assert not at.button(key="train_start").disabled
    assert not [b for b in at.button if b.key == "stop_run"]


# ---- real runs --------------------------------------------------------------------------------------


def test_the_backbone_chosen_is_remembered_for_embedding_ahead(two_classes):
    at = page(two_classes)
    at.selectbox(key="train_backbone").set_value("efficientnet_lite1").run()
    assert two_classes.backbone == "efficientnet_lite1"
    assert no_exceptions(page(two_classes)).selectbox(key="train_backbone").value == "efficientnet_lite1"


@pytest.mark.slow
def test_start_refuse_stop_reattach_and_finish(two_classes):
    at = page(two_classes)
    # Fine-tuning for many epochs: a run long enough to watch, refuse a second one beside, and stop.
    at.select_slider(key="train_unfreeze_blocks").set_value(1).run()
    at.number_input(key="train_finetune_epochs").set_value(40).run()
    at.number_input(key="train_patience").set_value(40).run()
    at.checkbox(key="train_augment_zoom").set_value(False).run()
    at.button(key="train_start").click().run()
    run = jobs.active_run(two_classes)
    assert run is not None and run.config["finetune_epochs"] == 40
    augment = TrainConfig.from_dict(run.config).augment
    assert not augment.zoom and augment.flip and augment.rotation and augment.contrast
    assert "Training now: run 1" in [h.value for h in no_exceptions(at).subheader]
    assert not [b for b in at.button if b.key == "train_start"]  # the settings make way for the live view

    fresh = no_exceptions(page(two_classes))  # a refresh, another tab, or the tab closed and opened again
    assert "Training now: run 1" in [h.value for h in fresh.subheader]
    fresh.toggle(key="train_show_setup").set_value(True).run()
    assert fresh.button(key="train_start").disabled  # a second run is refused while this one trains
    assert "Run 1 is training" in texts(fresh)
    fresh.button(key="stop_run").click().run()
    assert two_classes.run(run.id).stop_requested
    wait_until_done(two_classes, run.id)
    assert two_classes.run(run.id).status == "stopped"
    after = no_exceptions(page(two_classes))
    assert "Latest run: run 1" in [h.value for h in after.subheader]
    assert "stop" in texts(after).lower()

    after.select_slider(key="train_unfreeze_blocks").set_value(0).run()
    after.button(key="train_start").click().run()
    second = two_classes.runs()[0]  # newest first; a head-only run on embedded photos may be over already
    assert second.id != run.id
    wait_until_done(two_classes, second.id)
    done = no_exceptions(page(two_classes))
    finished = two_classes.run(second.id)
    assert finished.status == "completed", finished.error
    assert "validation photo" in done.success[0].value and "The model is ready" in done.success[0].value
    assert {link.label for link in done.get("page_link")} >= {"Try it on new photos"}
    assert len(done.get("vega_lite_chart")) == 1  # accuracy against regularisation strength: no epochs
    assert re.search(r"tried [2-8] strengths of regularisation and picked C=", texts(done))


@pytest.mark.slow
@pytest.mark.slow
def test_a_run_waits_for_a_check_on_a_big_project_and_says_so(two_classes):
    """The worker's training takes turns with the server's suspects check (`core.jobs.turns`): while a check holds
    its turn, a run clicked meanwhile says why it waits, then trains."""
    from core.jobs import turns
    from core.jobs.progress import WAITING

    with turns.turn(alone=True):  # the server's check on a big project
        page(two_classes).button(key="train_start").click().run()
        run = jobs.active_run(two_classes)
        deadline = time.monotonic() + 300
        while two_classes.run(run.id).progress.get("waiting") != WAITING:
            assert time.monotonic() < deadline, two_classes.run(run.id)
            time.sleep(0.2)
        at = no_exceptions(page(two_classes))
        assert f"**Now: waiting for its turn.** {WAITING}" in texts(at)
        assert at.get("progress")[0].proto.text == "Training starts as soon as the check is done."
    wait_until_done(two_classes, run.id)
    assert two_classes.run(run.id).status == "completed", two_classes.run(run.id).error


def test_results_page_explains_a_run_and_exports_it(two_classes):
    run_id = finished_run(two_classes)
    run_dir = two_classes.run_dir(run_id)
    photo = next(r for r in two_classes.images(class_name="blobs", split="val"))
    evaluation = json.loads((run_dir / EVALUATION_FILE).read_text())
    evaluation["misclassified"] = [{"path": str(photo.path), "true": "blobs", "predicted": "stripes",
                                    "confidence": 0.9}]  # a deliberate mix-up to fix from the gallery
    write_json(run_dir / EVALUATION_FILE, evaluation)

    at = no_exceptions(page(two_classes, "pages/results.py"))
    history = at.dataframe[0].value
    assert list(history["Run"]) == [run_id] and history["Status"][0] == "✅ finished"
    shown = texts(at)  # its head learned the validation photos after they measured it: the figures say they are before
    assert "learned these validation photos too" in shown and "before it learned the validation photos" in shown
    assert at.get("vega_lite_chart"), "confusion matrix missing"
    assert set(at.dataframe[1].value["Class"]) == set(CLASSES)
    assert {b.key for b in at.get("download_button")} == {"download_keras", "download_labels", "download_tflite",
                                                          "download_tflite_quant", *web_download()}

    at.button(key=f"fix_{run_id}_0").click().run()
    assert two_classes.image(photo.id).class_name == "stripes"
    assert "moved to **stripes**" in texts(no_exceptions(at))

    at.button(key="make_zip").click().run()
    assert {b.key for b in no_exceptions(at).get("download_button")} == {
        "download_keras", "download_labels", "download_tflite", "download_tflite_quant", "download_zip",
        *web_download()}
    archive = next((two_classes.meta_dir / "exports").glob("*.zip"))
    assert len(zipfile.ZipFile(archive).namelist()) == 30

    finished_run(two_classes, TrainConfig(refit=False))  # saved as validated: nothing to say
    assert "learned these validation photos too" not in texts(no_exceptions(page(two_classes, "pages/results.py")))


@pytest.mark.slow
def test_downloads_are_prepared_in_the_background_after_the_model_is_usable(two_classes):
    run_id = finished_run(two_classes, assemble=False)  # as the worker leaves it: head.npz, no .keras yet
    at = no_exceptions(page(two_classes, "pages/results.py"))
    assert "Preparing downloads" in texts(at) and not at.get("download_button")
    train_page = no_exceptions(page(two_classes))
    assert "Preparing downloads" in texts(train_page)
    deadline = time.time() + RUN_TIMEOUT
    while jobs.downloads(two_classes, two_classes.run(run_id)) == "preparing":  # the worker assembles them
        assert time.time() < deadline, "downloads not ready"
        time.sleep(0.5)
    at = no_exceptions(page(two_classes, "pages/results.py"))
    assert {"download_keras", "download_tflite", "download_tflite_quant"} <= {b.key for b in at.get("download_button")}
    assert "Downloads ready" in texts(no_exceptions(page(two_classes)))


def web_download() -> set[str]:
    """The web page's download button, there when LiteRT.js is installed (see tests/test_exports_page.py)."""
    from core.serving.web_runtime import RuntimeMissing, runtime_files

    try:
        runtime_files()
        return {"download_web"}
    except RuntimeMissing:
        return set()


def test_results_page_without_runs_points_to_training(project):
    at = no_exceptions(page(project, "pages/results.py"))
    assert "train one first" in at.info[0].value
    assert [link.label for link in at.get("page_link")] == ["Go to training"]


def test_start_page_ticks_training_only_once_a_run_left_a_model(two_classes):
    run_id = two_classes.create_run(TrainConfig().to_dict())
    two_classes.update_run(run_id, status="stopped", error="Stopped before any model was trained.")

    def step_titles() -> list[str]:
        at = no_exceptions(page(two_classes, "pages/home.py"))
        return [str(e.value) for e in at.markdown if str(e.value).startswith("####")]

    assert not any("✅" in title for title in step_titles() if "Review and train" in title)
    (two_classes.run_dir(run_id) / MODEL_FILE).write_bytes(b"a model")  # the page only checks it is there
    two_classes.update_run(run_id, status="completed")
    assert any("✅" in title for title in step_titles() if "Review and train" in title)


# ---- the real app in a browser ----------------------------------------------------------------------


def open_page(browser, url: str, project: str, link: str) -> None:
    """Open the app, then a page through the sidebar, as a person would."""
    browser.goto(f"{url}/?project={project}")
    browser.get_by_text("TransferLab").first.wait_for(timeout=60_000)
    browser.get_by_role("link", name=link).first.click()


def settled(browser) -> None:
    """The script run is over and no placeholder is still waiting for its element."""
    wait_idle(browser, 180_000)


@pytest.mark.slow
@pytest.mark.browser
def test_train_flowers_with_defaults_and_download(workspace):
    photos = shared_dataset("flowers5") / "train"
    import_folder(create_project("flowers", workspace), photos)
    with streamlit_server(workspace) as url, browser_page(1400, 1800) as browser:
        open_page(browser, url, "flowers", "3 · Train")
        browser.locator(".st-key-train_start button").first.wait_for(timeout=180_000)
        settled(browser)
        assert_no_errors(browser)
        screenshot(browser, "train_page_settings")

        browser.locator(".st-key-train_start button").first.click()
        browser.get_by_text("The model is ready", exact=False).wait_for(timeout=RUN_TIMEOUT * 1000)
        settled(browser)
        assert_no_errors(browser)
        assert browser.get_by_text("validation photos it had never seen", exact=False).count()
        assert browser.get_by_text("strengths of regularisation and picked C=", exact=False).count()
        screenshot(browser, "train_page_finished")
        browser.get_by_text("Downloads ready", exact=False).wait_for(timeout=RUN_TIMEOUT * 1000)

        browser.get_by_role("link", name="See where it goes wrong, and download the model").click()
        browser.get_by_text("Photos it got wrong").wait_for(timeout=120_000)
        settled(browser)
        assert_no_errors(browser)
        screenshot(browser, "results_page")
        with browser.expect_download() as download:
            browser.locator(".st-key-download_keras button").first.click()
        assert download.value.suggested_filename == "flowers-run1.keras"
        assert zipfile.is_zipfile(download.value.path())  # a .keras file is a zip archive


def test_photos_unlike_everyday_ones_are_pointed_at_fine_tuning(two_classes, monkeypatch):
    """A last run whose head cross-validated poorly on plenty of photos: the page says fine-tuning is likely to help,
    and with a joined network chosen, which network to choose for it."""
    monkeypatch.setattr(jobs, "prepare", lambda project: None)  # no background embedding with the real networks here
    run_id = two_classes.create_run(TrainConfig().to_dict())
    two_classes.update_run(run_id, status="failed", error="stand-in run", summary={
        "head_cv_accuracy": 0.7, "train_images": 400, "classes": ["cats", "dogs"]})
    at = no_exceptions(page(two_classes))
    shown = texts(at)
    assert "Your photos look unlike everyday photos" in shown and "70%" in shown and "200 photos per class" in shown
    assert "try retraining the last 2 blocks of EfficientNet-Lite0" in shown and "The last 3 gained" in shown
    assert "trains the new head only" not in shown
    # the recommended joined networks' head alone, measured on grocery photos at the photos a class nearest this
    # project's (30 photos in 2 classes: 12 a class to train on, so the gain measured at 10)
    joined_gain = dict(advice.GAINS_BY_PHOTOS[RECOMMENDED][advice.UNLIKE_SET])[10]
    label = get_backbone(RECOMMENDED).label
    measured = f"gained {joined_gain:+.1f} pts on 25 kinds of groceries, with no retraining"
    assert f"Or choose {label}: its new head alone {measured}." in shown
    # the joined networks' costs speak of the measured set like these photos, not of the one nearest in classes
    assert ("On the measured photo set of photos unlike everyday ones, as yours look (25 kinds of groceries, 25 "
            f"classes, trained on 10 photos a class) **{label}** named {joined_gain:.1f} more photos in 100 right") in shown
    at.selectbox(key="train_backbone").set_value(RECOMMENDED).run()
    assert (f"{label}, chosen above, trains the new head only, which alone {measured}: to retrain blocks, choose "
            "EfficientNet-Lite0." in texts(no_exceptions(at)))
    at.selectbox(key="train_backbone").set_value(OFFERED[1]).run()
    assert (f"{get_backbone(OFFERED[1]).label}, chosen above, trains the new head only: to retrain blocks, choose "
            "EfficientNet-Lite0." in texts(no_exceptions(at)))
    two_classes.update_run(run_id, summary={"head_cv_accuracy": 0.95, "train_images": 400, "classes": ["cats", "dogs"]})
    shown = texts(no_exceptions(page(two_classes)))
    assert "unlike everyday photos" not in shown and "whose number of classes is nearest yours (ants vs bees" in shown


def test_a_hundred_classes_are_counted_not_listed_in_one_line(project):
    """'Your photos' names the first classes and says how many more, instead of one line of 100 names."""
    for c in range(20):
        for i in range(2):
            project.add_image(f"kind {c:02d}", class_photo_bytes(c % 2, 100 * c + i), source="upload")
    line = next(m.value for m in no_exceptions(page(project)).markdown if "20 classes" in m.value)
    assert "kind 00" in line and "kind 11" in line and "kind 12" not in line and "and 8 more" in line
