"""bench/bench_scale.py's steps that drive a real server, at a small size (the bench runs them at 1,000-50,000)."""

from __future__ import annotations

import re

import pytest

from bench import bench_scale
from core.model import suspects


@pytest.mark.slow
@pytest.mark.browser
def test_the_suspects_check_in_the_server_is_timed_and_its_memory_sampled(workspace, folders, tmp_path):
    """A user's check: clicked on Review's Suspects tab in Chromium, waited on until the tab shows the ranking; the
    server's memory before and at its peak come from /proc, and the table prints them."""
    from core.intake.ingest import import_folder
    from core.store.project import create_project

    project = create_project(bench_scale.PROJECT, workspace)
    import_folder(project, folders / "train")
    # embedded here, as the bench's projects are before the step: the server's check reads them from the cache
    suspects.remember(project, suspects.rank_suspects(project), set())  # and the step drops this ranking first

    out = bench_scale.step_server_suspects(workspace, 300, tmp_path)

    assert not out.note, out.note
    figures = out.figures
    assert 0 < figures["seconds"] < 300
    assert 50 < figures["server before MB"] <= figures["before MB"] <= figures["peak MB"]
    assert figures["server before MB"] <= figures["server peak MB"] <= figures["server VmHWM MB"] + 1
    kept = {r.id for r in project.images(status="kept")}
    ranking = suspects.remembered(project)
    assert ranking is not None and ranking.photo_ids == kept and {s.image_id for s in ranking.items} == kept
    assert (tmp_path / "suspects-done.png").stat().st_size > 0
    printed = bench_scale.report([32], {32: {"suspects-server": out}})
    assert "suspects in the server: server + worker peak MB" in printed and str(figures["peak MB"]) in printed


def test_a_check_past_its_limit_is_reported_as_such():
    """A check that did not end within the limit shows as "> limit", and its peak memory until then as a lower
    bound."""
    late = bench_scale.Outcome({"server before MB": 280, "before MB": 300, "peak MB": 900},
                               "> 60 s (the check was still running)")
    lines = bench_scale.report([1000], {1000: {"suspects-server": late}}).splitlines()
    rows = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in lines[2:] if line.startswith("suspects"))
    assert rows["suspects in the server: s"] == rows["suspects in the server: server peak MB"] == "> 60 s"
    assert rows["suspects in the server: server MB before"] == "280"
    assert rows["suspects in the server: server + worker peak MB"] == ">= 900"
