"""The worker's order of work: a run training goes before the assembly of earlier runs' heat maps and downloads
(issue 20, item 9: a head-only run waited behind the previous run's downloads)."""

from __future__ import annotations

import time
from pathlib import Path

from core.jobs import worker
from core.serving import export, heatmap


def test_the_assembler_starts_nothing_while_a_run_trains(monkeypatch, tmp_path: Path):
    done = []
    monkeypatch.setattr(heatmap, "prepare", lambda run_dir, model=None: done.append(("heat map", run_dir.name)))
    monkeypatch.setattr(export, "downloads_state", lambda run_dir: "preparing")
    monkeypatch.setattr(export, "assemble_downloads", lambda run_dir, model=None: done.append(("downloads", run_dir.name)))
    assembler = worker.Assembler()
    assembler.start()
    assembler.idle.clear()  # as the worker does while a run trains
    assembler.add(worker.HEAT_MAP, tmp_path / "run1")
    assembler.add(worker.DOWNLOADS, tmp_path / "run1")
    time.sleep(0.5)
    assert done == []  # both wait for the training run
    assembler.idle.set()
    assembler.finish()  # FINISH comes after the work already queued
    assert done == [("heat map", "run1"), ("downloads", "run1")]
