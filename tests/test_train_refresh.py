"""A refresh while a run trains comes back to the run, again and again (it once left a blank page: "Bad delta path
index" in the console, then "Cannot send rerun backMessage when disconnected from server" every second: the page's
websocket gives up for good on a delta it cannot place), and a refresh as it ends shows how it ended. One test
reports progress itself, at a steady pace; the other refreshes at random moments of a real run in the worker, from
its first epochs through its end (the page switches from the live fragment to the outcome's) to its downloads."""

from __future__ import annotations

import os
import random
import re
import threading
import time

import pytest

from core.jobs.server import start_training
from core.serving.export import downloads_state
from core.store.project import Project, create_project
from core.model.train import STAGE_FINETUNE, TrainConfig
from tests.browser import assert_no_errors, browser_page, screenshot, streamlit_server, wait_idle
from tests.photos import class_photo_bytes

pytestmark = [pytest.mark.browser, pytest.mark.slow]
REFRESHES = 12
EPOCHS = 20


def two_class_project(root, per_class: int) -> Project:
    project = create_project("refresh", root)
    for label, name in enumerate(("stripes", "rings")):
        for seed in range(per_class):
            project.add_image(name, class_photo_bytes(label, seed), source="upload", original_name=f"{name}{seed}.jpg")
    return project


def training_project(root) -> tuple[Project, int]:
    """A project whose run 1 is fine-tuning, reported by this process (alive, so the run is not taken for dead)."""
    project = two_class_project(root, 6)
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


def fatal(problems: list[str]) -> list[str]:
    """The console lines of a page whose websocket gave up: a delta it could not place, then no server."""
    return [p for p in problems if any(w in p.lower() for w in ("delta path", "fatal error", "disconnected"))]


def test_refreshing_at_any_moment_of_a_real_run_always_comes_back_to_it(workspace):
    """Hasty refreshes (before the page has finished drawing) alternate with ones that wait for the run's view, at
    random moments of a real fine-tuning run: while it trains, as it ends and while its downloads are made."""
    seed = int(time.time())
    rng = random.Random(seed)
    project = two_class_project(workspace, 30)
    problems: list[str] = []
    with streamlit_server(workspace) as url, browser_page() as page:
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.goto(f"{url}/train?project=refresh")
        wait_idle(page, 180_000)
        run_id = start_training(project, TrainConfig(unfreeze_blocks=1, finetune_epochs=6, patience=6))
        view = page.get_by_text(re.compile(rf"^(Training now|Latest run): run {run_id}$"))
        seen, after_downloads, refreshes = set(), 0, 0
        deadline = time.time() + 900
        while after_downloads < 3:
            assert time.time() < deadline, f"the run did not end with its downloads in 15 minutes (seed {seed})"
            refreshes += 1
            page.reload(wait_until="commit")
            page.wait_for_timeout(rng.uniform(0, 2500))
            if refreshes % 2 == 0:  # this one waits for the page to come back, and a few of its live redraws
                view.wait_for(timeout=120_000)
                page.wait_for_timeout(1500)
                assert view.is_visible(), f"refresh {refreshes} (seed {seed}): the run is gone from the page"
                seen.add(view.inner_text().split(":")[0])
                assert_no_errors(page)
            assert not fatal(problems), f"refresh {refreshes} (seed {seed}): {fatal(problems)}"
            run = project.run(run_id)
            if run.status not in ("queued", "running") and downloads_state(run.dir) == "ready":
                after_downloads += 1
        assert run.status == "completed", run.error
        assert seen == {"Training now", "Latest run"}, seen  # refreshed both while it trained and after
        wait_idle(page, 120_000)
        page.get_by_text("Downloads ready").wait_for(timeout=120_000)
        screenshot(page, "train-refreshed-through-a-real-run")
    assert not fatal(problems), problems
