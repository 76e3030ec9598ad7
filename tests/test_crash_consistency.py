"""Writers killed at random moments lose nothing, even through the repair tools (issue 19): the bench's check."""

from __future__ import annotations

import pytest

from bench import crash_consistency


@pytest.mark.slow
def test_thirty_random_kills_of_two_writers_leave_every_photo_and_every_row_in_step(capsys):
    assert crash_consistency.main(["--kills", "30", "--seconds", "900"]) == 0, capsys.readouterr().out
