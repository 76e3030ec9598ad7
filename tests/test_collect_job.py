"""Background collections: reading class names, the job's live state, cancel, errors, and the registry."""

from __future__ import annotations

import pytest

from core.jobs import collect as collect_job
from core.intake.collect import CollectRequest
from core.jobs.collect import CollectBusy, parse_class_names
from core.intake.download import Downloader
from core.store.project import create_project
from tests.bing_standin import FAST, bing_standin, loopback_only, standin  # noqa: F401,F811 (fixtures)
from tests.browser import free_port

@pytest.fixture
def pool(standin):
    with Downloader(FAST, resolve=standin.resolve) as downloader:
        yield downloader


# ---- class names ------------------------------------------------------------------------------


def test_class_names_are_cleaned_and_blank_lines_ignored():
    assert parse_class_names("  alpaca \n\n llama   pet\n") == collect_job.ClassNames(["alpaca", "llama pet"], [])


def test_bad_and_repeated_names_are_reported_by_line():
    parsed = parse_class_names("cats\na/b\n.hidden\nCats\ndogs")
    assert parsed.names == ["cats", "dogs"]
    assert [p.split(":")[0] for p in parsed.problems] == ["Line 2", "Line 3", "Line 4"]
    assert "already on line 1" in parsed.problems[2]


@pytest.mark.parametrize("text", ["", "   \n\n"])
def test_no_names_is_a_problem(text):
    assert parse_class_names(text).problems == ["Type at least one class name, one per line."]


# ---- a job --------------------------------------------------------------------------------------


def test_a_job_reports_progress_thumbnails_and_the_final_report(project, pool):
    job = collect_job.start(project, CollectRequest(["cats", "dogs"], per_class=4), downloader=pool)
    assert job.wait(60)
    view = job.view()
    assert not view.running and view.error is None
    assert [(c.name, c.saved, c.state) for c in view.classes] == [("cats", 4, "done"), ("dogs", 4, "done")]
    assert view.saved == 8 and [c.saved for c in view.report.classes] == [4, 4]
    assert len(view.recent) == 8 and view.recent[0].class_name == "dogs"  # newest first
    assert all(p.thumbnail.startswith(b"\xff\xd8") for p in view.recent)
    assert len(project.images()) == 8


def test_recent_thumbnails_are_capped(project, pool):
    job = collect_job.start(project, CollectRequest(["cats"], per_class=collect_job.RECENT_PHOTOS + 3), downloader=pool)
    assert job.wait(60)
    assert len(job.view().recent) == collect_job.RECENT_PHOTOS


def test_cancel_ends_the_run_and_keeps_whole_photos(project, standin, pool):
    standin.latency = 0.3
    job = collect_job.start(project, CollectRequest(["cats", "dogs"], per_class=40), downloader=pool)
    job.cancel()
    assert job.view().cancelling or not job.running
    assert job.wait(60)
    view = job.view()
    assert view.report.cancelled and not view.cancelling
    assert view.saved == len(project.images()) < 80


def test_an_unreachable_search_becomes_the_jobs_error(project, standin, pool, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_SEARCH_URL", f"http://127.0.0.1:{free_port()}/images/async")
    job = collect_job.start(project, CollectRequest(["cats"], per_class=3), downloader=pool)
    assert job.wait(60)
    view = job.view()
    assert view.report is None and "Could not reach" in view.error
    assert project.class_names() == [] and not any(project.images_dir.iterdir())


def test_an_unexpected_failure_still_ends_the_run(project, pool, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(collect_job, "collect", broken)
    job = collect_job.start(project, CollectRequest(["cats"]), downloader=pool)
    assert job.wait(60)
    assert job.view().error == "Collecting stopped because of an unexpected error: disk on fire"


# ---- the registry ---------------------------------------------------------------------------------


def test_one_run_per_project_and_a_finished_run_stays_until_forgotten(workspace, standin, pool):
    standin.latency = 0.2
    first, second = create_project("first", workspace), create_project("second", workspace)
    job = collect_job.start(first, CollectRequest(["cats"], per_class=30), downloader=pool)
    with pytest.raises(CollectBusy):
        collect_job.start(first, CollectRequest(["dogs"]), downloader=pool)
    collect_job.forget(first)  # a running job is not dropped
    assert collect_job.current(first) is job and collect_job.current(second) is None
    other = collect_job.start(second, CollectRequest(["dogs"], per_class=2), downloader=pool)  # another project may
    job.cancel()
    assert job.wait(60) and other.wait(60)
    assert collect_job.current(first) is job
    collect_job.forget(first)
    assert collect_job.current(first) is None and collect_job.current(second) is other
