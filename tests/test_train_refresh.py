"""A refresh while a run trains comes back to the run, again and again (it once left a blank page: "Bad delta path
index" in the console), and a refresh as it ends shows how it ended."""

from __future__ import annotations

import os
import threading
import time

import pytest

from core.store.project import Project, create_project
from core.model.train import STAGE_FINETUNE, TrainConfig
from tests.browser import browser_page, screenshot, streamlit_server
from tests.photos import add_class_photos

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REFRESHES = 12
EPOCHS = 20


def training_project(root) -> tuple[Project, int]:
    """A project whose run 1 is fine-tuning, reported by this process (alive, so the run is not taken for dead)."""
    project = create_project("refresh", root)
    add_class_photos(project, {"stripes": 6, "rings": 6})
    run_id = project.create_run(TrainConfig(unfreeze_blocks=2).to_dict())
    project.update_run(run_id, status="running", pid=os.getpid())
    return project, run_id


def report_progress(project: Project, run_id: int, stop: threading.Event) -> None:
    """What the worker writes while fine-tuning: an epoch every few seconds, progress twice a second."""
    started = time.time()
    while not stop.is_set():
        elapsed = time.time() - started
        epoch, batch = int(elapsed // 4) % EPOCHS + 1, int(elapsed * 2) % 8 + 1
        project.update_run(run_id, progress={
            "stage": STAGE_FINETUNE, "fraction": (epoch - 1 + batch / 8) / EPOCHS, "stage_elapsed": elapsed,
            "eta_seconds": 60.0, "written": time.time(), "finetune_planned": True, "epoch": epoch, "epochs": EPOCHS,
            "batch": batch, "batches": 8, "logs": {"loss": 0.5, "accuracy": 0.8}})
        stop.wait(0.5)


def test_refreshing_while_a_run_trains_always_comes_back_to_it(workspace):
    project, run_id = training_project(workspace)
    stop = threading.Event()
    reporter = threading.Thread(target=report_progress, args=(project, run_id, stop), daemon=True)
    reporter.start()
    problems: list[str] = []
    try:
        with streamlit_server(workspace) as url, browser_page() as page:
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{url}/train?project=refresh")
            live = page.get_by_text(f"Training now: run {run_id}")
            live.wait_for(timeout=120_000)
            for i in range(REFRESHES):
                page.reload()
                page.wait_for_timeout(300 * (i % 5))  # refreshed at varied moments of the page's first run
                live.wait_for(timeout=120_000)
                page.get_by_text("Epoch ").first.wait_for(timeout=60_000)
                page.wait_for_timeout(1500)  # a few of the live view's redraws
                assert live.is_visible(), f"refresh {i + 1}: the run is gone from the page"
                assert not [p for p in problems if "delta path" in p.lower()], problems
            screenshot(page, "train-refreshed-while-training")
            stop.set()
            reporter.join()
            project.update_run(run_id, status="stopped", error="Stopped before any model was trained.")
            page.reload()
            page.get_by_text(f"Latest run: run {run_id}").wait_for(timeout=120_000)
            page.get_by_text("Start a new run when you are ready").wait_for(timeout=60_000)
            screenshot(page, "train-refreshed-after-the-run")
        assert not [p for p in problems if "delta path" in p.lower() or "disconnected" in p.lower()], problems
    finally:
        stop.set()
