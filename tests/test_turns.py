"""Memory-heavy work in turns across processes (`core.jobs.turns`): the server's check on a big project alone, the
worker's jobs beside one another."""

import subprocess
import sys
import threading
import time

import pytest

from core.jobs import turns
from tests.browser import ROOT

HOLD = ("import sys, time; from core.jobs.turns import turn\n"
        "with turn(alone={alone}):\n    print('held', flush=True); sys.stdin.readline()\n")


def holder(alone: bool) -> subprocess.Popen:
    """Another process holding a turn until its stdin gets a line."""
    process = subprocess.Popen([sys.executable, "-c", HOLD.format(alone=alone)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def release(process: subprocess.Popen) -> None:
    process.stdin.write("\n")
    process.stdin.flush()
    assert process.wait(60) == 0


def test_a_turn_alone_in_another_process_makes_a_shared_one_wait_and_a_stop_ends_the_wait(workspace):
    other = holder(alone=True)
    waits, asked = [], []
    with pytest.raises(InterruptedError):
        with turns.turn(alone=False, on_wait=lambda: waits.append(1), should_stop=lambda: asked.append(1) or len(asked) > 2):
            pytest.fail("the turn was taken while another process held it alone")
    assert waits == [1] and len(asked) == 3  # told once, then asked between tries
    release(other)
    with turns.turn(alone=False, on_wait=lambda: pytest.fail("nobody holds it now")):
        pass


def test_the_workers_jobs_share_their_turn_and_the_check_waits_for_them(workspace):
    other = holder(alone=False)  # the worker, making downloads
    with turns.turn(alone=False, on_wait=lambda: pytest.fail("shared turns do not wait for one another")):
        pass
    got = threading.Event()

    def check():
        with turns.turn(alone=True):
            got.set()

    thread = threading.Thread(target=check)
    thread.start()
    time.sleep(2 * turns.POLL)
    assert not got.is_set()  # the check waits while the worker works
    release(other)
    assert got.wait(60)
    thread.join()


def test_a_holder_that_dies_gives_its_turn_back(workspace):
    other = holder(alone=True)
    other.kill()
    other.wait(60)
    with turns.turn(alone=True, on_wait=lambda: pytest.fail("a dead process holds nothing")):
        pass
