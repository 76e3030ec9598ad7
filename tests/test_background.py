"""core.jobs.background: a task's progress, result, errors and cancel; one running job per key."""

from __future__ import annotations

import threading

import pytest

from core.jobs.background import Busy, Registry, Task

WAIT = 60  # seconds: generous, for a loaded machine


def test_a_task_reports_progress_and_its_result():
    reported, go = threading.Event(), threading.Event()

    def work(task: Task) -> str:
        task.report(1, 4, "one of four")
        reported.set()
        assert go.wait(WAIT)
        return "done"

    task = Task("t", work, what="Working")
    task.start()
    assert reported.wait(WAIT)
    view = task.view()
    assert view.running and view.fraction == 0.25 and view.text == "one of four" and view.result is None
    go.set()
    assert task.wait(WAIT)
    view = task.view()
    assert not view.running and view.result == "done" and view.error is None and not view.cancelled


def test_expected_errors_are_the_message_and_others_are_summarised():
    def refuse(task: Task) -> None:
        raise ValueError("Add photos first.")

    def crash(task: Task) -> None:
        raise KeyError("boom")

    expected = Task("t", refuse, what="The check", expected=(ValueError,))
    unexpected = Task("t", crash, what="The check", expected=(ValueError,))
    for task in (expected, unexpected):
        task.start()
        assert task.wait(WAIT)
    assert expected.view().error == "Add photos first."
    assert unexpected.view().error == "The check stopped because of an unexpected error: 'boom'"
    assert not unexpected.view().running


def test_a_cancel_is_honoured_at_the_next_check():
    started = threading.Event()

    def work(task: Task) -> None:
        started.set()
        while True:
            task.check()

    task = Task("t", work, what="Working")
    task.start()
    assert started.wait(WAIT)
    task.cancel()
    assert task.wait(WAIT)
    view = task.view()
    assert view.cancelled and view.error == "Stopped as you asked." and not view.cancelling


def test_one_running_job_per_key_and_a_finished_one_is_kept_until_forgotten():
    go = threading.Event()
    registry: Registry[Task] = Registry(lambda: Busy("busy here"))
    first = registry.start("a", lambda: Task("t", lambda task: go.wait(WAIT), what="Working"))
    with pytest.raises(Busy, match="busy here"):
        registry.start("a", lambda: Task("t", lambda task: None, what="Working"))
    other = registry.start("b", lambda: Task("t", lambda task: None, what="Working"))  # another key runs beside
    registry.forget("a")
    assert registry.current("a") is first, "a running job is never forgotten"
    go.set()
    assert first.wait(WAIT) and other.wait(WAIT)
    assert registry.current("a") is first  # finished: still there for a page drawn after it ended
    registry.forget("a")
    assert registry.current("a") is None
    again = registry.start("a", lambda: Task("t", lambda task: 7, what="Working"))
    assert again.wait(WAIT) and again.view().result == 7
