"""Comparing runs on Results, and the Train page's live view: what a person reads off the charts and tables.

The chart specs are read from the page's vega_lite_chart elements (AppTest); what only the browser
shows (the chart toolbar over the text, both charts at once) is checked in headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest

from core.jobs import progress, worker
from core.model.compare import same_stages
from core.store.project import Project
from core.model.schedule import automatic_rate
from core.model.train import STAGE_FINETUNE, TrainConfig
from pages import ui
from tests.browser import assert_no_errors, browser_page, screenshot, streamlit_server, wait_idle
from tests.runs import finished_run
from tests.apptest import no_exceptions
from tests.test_train_page import page, texts, two_classes  # noqa: F401 (fixture)

FINETUNE_EPOCHS = 6


def fine_tuned_twin(project: Project, head_run: int) -> int:
    """A run that solved the same head as `head_run` (same photos and seed), then fine-tuned one block for a few
    epochs and did a little better: as the worker records it, without the minutes of training."""
    source = project.run(head_run)
    cfg = TrainConfig(unfreeze_blocks=1)  # rate and epochs automatic
    run_id = project.create_run(cfg.to_dict())
    for row in project.epochs(head_run):
        metrics = {k: v for k, v in row.items() if k not in ("stage", "epoch")}
        project.add_epoch(run_id, row["stage"], row["epoch"], metrics)
    for epoch in range(1, FINETUNE_EPOCHS + 1):
        project.add_epoch(run_id, STAGE_FINETUNE, epoch, {
            "loss": 0.30 - 0.02 * epoch, "accuracy": 0.95 + 0.005 * epoch,
            "val_loss": 0.25 - 0.01 * epoch, "val_accuracy": 0.97 + 0.004 * epoch})
    for name in os.listdir(source.dir):
        if (source.dir / name).is_file():
            shutil.copy(source.dir / name, project.run_dir(run_id) / name)
    summary = {**source.summary, "unfreeze_blocks": 1, "val_accuracy": 0.9804, "finetune_seconds": 42.0,
               "best_epoch": {STAGE_FINETUNE: 4}, "config": cfg.to_dict(),
               "finetune_learning_rate": automatic_rate(source.summary["train_images"]), "finetune_epochs": 10}
    project.update_run(run_id, status="completed", summary=summary)
    return run_id


def specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]


def views(spec: dict) -> list[dict]:
    """Every single view of a (layered, concatenated) spec."""
    children = [child for key in ("layer", "vconcat", "hconcat", "concat") for child in spec.get(key, [])]
    return ([spec] if "mark" in spec else []) + [view for child in children for view in views(child)]


def field(view: dict, channel: str) -> str | None:
    return (view.get("encoding", {}).get(channel) or {}).get("field")


def comparison(at) -> dict:
    """The one chart of the comparison section: the one that shows lines by run."""
    found = [s for s in specs(at) if any(field(v, "color") == "run" for v in views(s))]
    assert len(found) == 1, f"expected one comparison chart, got {len(found)}"
    return found[0]


@pytest.mark.slow
def test_two_runs_compare_stage_by_stage_with_zoomed_axes_and_a_side_by_side_table(two_classes):
    head = finished_run(two_classes, assemble=False, epochs=True)
    tuned = fine_tuned_twin(two_classes, head)
    at = no_exceptions(page(two_classes, "pages/results.py"))
    assert at.multiselect(key="compare_runs").value == [tuned, head]

    lines = [v for v in views(comparison(at)) if (v.get("mark") or {}).get("type", v.get("mark")) == "line"]
    xs = {field(v, "x") for v in lines}
    assert xs == {"C", "epoch"}, "one panel per stage, each with its own x axis: the head's C, fine-tuning's epochs"
    for view in lines:  # identical head lines stay visible: each run has its own colour AND line width
        assert field(view, "color") == "run" and field(view, "strokeWidth") == "run"
        assert field(view, "strokeDash") == "split"
    finetune_x = next(v for v in lines if field(v, "x") == "epoch")["encoding"]["x"]
    assert finetune_x["scale"]["domain"] == [1, FINETUNE_EPOCHS], "fine-tuning's epochs fill their own axis"
    for view in lines:
        y = view["encoding"]["y"]
        if y["field"] == "accuracy":
            low, high = y["scale"]["domain"]
            assert 0.5 < low < 0.97 and high == 1.0, f"accuracy axis not zoomed on the data: {low}..{high}"
    assert "the same head" in texts(at), "the page says why two lines are one"

    table = next(d.value for d in at.dataframe if list(d.value.columns)[:1] == [""])  # the side-by-side table
    assert list(table.columns) == ["", f"Run {tuned}", f"Run {head}"]
    accuracy = dict(zip(table[""], table[f"Run {tuned}"]))["Validation accuracy"]
    assert accuracy.startswith(ui.percent(0.9804)) and "98.04" not in accuracy
    rate = two_classes.run(tuned).summary["finetune_learning_rate"]  # the rate it used, chosen for its photos
    assert f"≤10 epochs (automatic) at rate {rate:g} (automatic), batch 64" in dict(zip(table[""], table[f"Run {tuned}"]))["Settings"]

    history = at.dataframe[0].value
    assert len(history.columns) <= 7, "the runs table fits the page: fewer, narrower columns"
    assert history["Validation accuracy"][0] == ui.percent(0.9804), "one percent format on the page"
    assert f"{ui.percent(0.9804)} right" in at.selectbox(key="results_run").format_func(tuned)


def test_same_stages_finds_the_stages_two_runs_recorded_alike():
    head = [{"stage": "head", "epoch": i, "C": c, "cv_accuracy": 0.9 + i / 100, "chosen": i == 2}
            for i, c in enumerate((0.01, 0.1, 1.0), start=1)]
    tuned = [{"stage": STAGE_FINETUNE, "epoch": 1, "accuracy": 0.95, "val_accuracy": 0.97}]
    reread = [{**row, "cv_accuracy": json.loads(json.dumps(row["cv_accuracy"]))} for row in head]  # as stored
    assert same_stages(head + tuned, reread) == ["head"]
    assert same_stages(head, [{**head[0], "cv_accuracy": 0.5}, *head[1:]]) == []
    assert same_stages(head, head[:2]) == []  # a stage cut short is not the same


def running_run(project: Project, progress: dict) -> int:
    """A run the page sees training (this test process plays its worker) with the given progress."""
    run_id = project.create_run(TrainConfig(unfreeze_blocks=1).to_dict())
    project.update_run(run_id, status="running", pid=os.getpid(), progress=progress)
    return run_id


def progress_caption(at) -> str:
    return next(p.proto.text for p in at.get("progress"))


def test_counts_are_written_in_plain_english():
    assert [ui.plural(n, w) for n, w in [(1, "epoch"), (8, "epoch"), (2, "class"), (3, "copy"), (2, "batch")]] == \
        ["1 epoch", "8 epochs", "2 classes", "3 copies", "2 batches"]
    assert ui.percent(0.9804) == "98%"

class Progress:
    """A stand-in store that keeps the last progress a listener wrote."""

    def __init__(self):
        self.progress: dict = {}

    def update_run(self, run_id, progress):
        self.progress = progress


def test_time_left_is_paced_by_the_work_done_since_the_stage_started_moving(monkeypatch):
    """Half the photos already cached (counted done at once) must not make the other half look instant."""
    clock = [1000.0]
    monkeypatch.setattr(worker.time, "time", lambda: clock[0])
    store = Progress()
    listener = worker.StoreListener(store, 1)
    listener.on_stage("embedding", {"images": 100})
    clock[0] += 1
    listener.on_batch("embedding", 1, 100, 200, {})  # the cached half, reported at once
    assert store.progress["eta_seconds"] is None
    clock[0] += 20
    listener.on_batch("embedding", 1, 120, 200, {})  # 20 photos in 20 s: 80 left take 80 s
    assert store.progress["eta_seconds"] == pytest.approx(80.0)


def test_time_left_counts_down_from_when_it_was_measured_and_never_below_zero():
    now = 1000.0
    assert progress.time_left({"eta_seconds": 100.0, "written": now - 40}, now) == pytest.approx(60.0)
    assert progress.time_left({"eta_seconds": 1.0, "written": now - 40}, now) == 0.0
    assert progress.time_left({"eta_seconds": None, "written": now}, now) is None
    assert progress.time_left({"eta_seconds": 30.0, "written": now, "fraction": 1.0}, now) == 0.0


def test_a_step_that_ran_past_its_estimate_says_it_is_finishing_not_one_second_left(two_classes):
    stale = time.time() - 40  # the last estimate, 1 s, was written 40 s ago: fitting's last epoch is being checked
    run_id = running_run(two_classes, {"stage": STAGE_FINETUNE, "fraction": 0.99, "eta_seconds": 1.0,
                                       "written": stale, "epoch": 10, "epochs": 10, "batch": 0, "batches": 0,
                                       "logs": {}})
    at = no_exceptions(page(two_classes))
    caption = progress_caption(at)
    assert "1 s left" not in caption and "finishing" in caption.lower(), caption
    two_classes.update_run(run_id, progress={"stage": STAGE_FINETUNE, "fraction": 0.5, "eta_seconds": 300.0,
                                             "written": time.time() - 60, "epoch": 5, "epochs": 10,
                                             "batch": 0, "batches": 0, "logs": {}})
    assert "4 min left" in progress_caption(no_exceptions(page(two_classes)))
    two_classes.update_run(run_id, status="stopped")


def test_train_draws_fine_tuning_accuracy_and_loss_as_one_chart(two_classes):
    head = finished_run(two_classes, assemble=False, epochs=True)
    fine_tuned_twin(two_classes, head)
    at = no_exceptions(page(two_classes))
    epochs = [s for s in specs(at) if any(field(v, "x") == "epoch" for v in views(s))]
    assert len(epochs) == 1, "accuracy and loss in one chart, drawn in one go"
    assert {field(v, "y") for v in views(epochs[0]) if field(v, "y")} >= {"accuracy", "loss"}


@pytest.mark.slow
@pytest.mark.browser
def test_chart_toolbar_never_covers_the_text_about_the_chart(two_classes, workspace):
    head = finished_run(two_classes, assemble=False, epochs=True)
    fine_tuned_twin(two_classes, head)
    with streamlit_server(workspace) as url, browser_page(1400, 1400) as browser:
        for path, name in (("train", "train"), ("results", "results")):
            browser.goto(f"{url}/{path}?project={two_classes.name}")
            browser.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=120_000)
            wait_idle(browser, 180_000)
            assert_no_errors(browser)
            for chart in browser.locator('[data-testid="stVegaLiteChart"]').all():
                chart.hover()
                browser.wait_for_timeout(300)
                overlaps = browser.evaluate(OVERLAPS)
                assert not overlaps, f"on {name}, the chart's toolbar covers: {overlaps}"
            screenshot(browser, f"compare_{name}")


# Text (markdown, captions) whose box intersects a shown element toolbar (the hovered chart's) or Vega actions menu.
OVERLAPS = """() => {
  const shown = e => { const r = e.getBoundingClientRect(), style = getComputedStyle(e);
                       return r.width > 0 && r.height > 0 && style.visibility !== 'hidden' && +style.opacity > 0.5; };
  const bars = [...document.querySelectorAll('[data-testid="stElementToolbar"], .vega-embed details')]
    .filter(shown).map(e => e.getBoundingClientRect());
  const texts = [...document.querySelectorAll(
    '[data-testid="stCaptionContainer"], [data-testid="stMarkdownContainer"]')];
  const lines = t => { const range = document.createRange(); range.selectNodeContents(t);
                       return [...range.getClientRects()]; };  // the text itself, not its full-width box
  const hit = (a, b) => a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom;
  return texts.filter(t => lines(t).some(l => bars.some(b => hit(l, b)))).map(t => t.innerText.slice(0, 80));
}"""
