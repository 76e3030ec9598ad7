"""Try it decodes uploads a few at a time: forged photos that decode to ~48 MB each cost little memory (issue 19,
item 4). The figure for 40 of them is `python -m bench.bench_upload_memory`."""

from __future__ import annotations

import pytest

from bench.bench_upload_memory import PAGE, forged_photo, make_project, measure

PHOTOS = 20
MAX_ADDED_MB = 300  # all decoded at once, they took ~460 MB more (~23 MB each); a few at a time take ~120 MB


@pytest.mark.slow
def test_forged_uploads_are_all_judged_within_bounded_memory(workspace, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(PHOTOS):
        (photos / f"{i:03d}.jpg").write_bytes(forged_photo(i))
    make_project(workspace)
    got = measure(PAGE, photos, workspace, workspace / "memory" / "runs" / "run-0001")
    assert got["judged"] == PHOTOS and not got["errors"]
    assert (got["peak"] - got["before"]) / 2 ** 20 < MAX_ADDED_MB
