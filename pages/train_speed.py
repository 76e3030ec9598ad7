"""The Train page's speed-timing panel: time the networks on this computer (in the worker process, in the
background) and show the timing while it runs."""

from __future__ import annotations

import streamlit as st

from core.jobs import api as jobs
from core.jobs.api import Busy
from core.model.api import REGISTRY
from pages import ui


def start_measuring(names: list[str]) -> None:
    """Button callback: time the networks in the background (a finished timing's report is dropped first)."""
    jobs.forget_measuring()
    try:
        jobs.start_measuring([REGISTRY[name] for name in names])
    except Busy as exc:  # another tab started one a moment ago: this page shows that one
        st.session_state["speed_busy"] = str(exc)


def measuring_view(timing: bool, timed: int) -> None:
    """The timing in progress (polled while it runs), then what could not be timed or why it stopped; `timed`:
    how many networks were done when the page was drawn."""
    task = jobs.measuring()
    view = task.view() if task else None
    if timing and not (view and view.running and view.done == timed):
        st.rerun()  # a network was timed, or the timing ended: redraw the page, its tables have the new figures
    if view is None:
        return
    if view.running:
        ui.task_progress(task, view, stop_key="stop_measuring", stop="Stop timing",
                         stopping="Stopping after the network being timed…",
                         stop_help="The networks timed so far keep their figures.",
                         note="You can leave this page: the timing goes on, and the table shows each figure once "
                              "it is done.")
        return
    if view.cancelled:
        st.info("Timing stopped; the networks timed before that keep their figures.", icon="⏹️")
    elif view.error:
        st.error(view.error)
    for label, why in (view.result or {}).items():
        st.warning(f"{label} could not be timed: {why}")
