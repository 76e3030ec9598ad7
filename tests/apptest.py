"""The app in AppTest: a fresh browser session with a project picked, on one page, run once."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def open_app(project: str | None = None, path: str | None = None, timeout: float = 180) -> AppTest:
    """A fresh session of the app with `project` picked, on the page `path` (app.py's own when None), run once;
    `timeout` is generous: a loaded machine runs a page slowly."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    if project is not None:
        at.session_state["project"] = project
    if path is not None:
        at.switch_page(path)
    return at.run()


def no_exceptions(at: AppTest) -> AppTest:
    """The page ran without an exception (the first one's message when it did not)."""
    assert not at.exception, [e.value for e in at.exception]
    return at
