"""The project sidebar: creating a project opens it, says so and closes the New-project panel."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from core.store import create_project, list_projects

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def run_app(project: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if project:
        at.query_params["project"] = project
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def create(at: AppTest, name: str) -> AppTest:
    at.sidebar.text_input[0].input(name)
    at.sidebar.button[0].click().run()  # the form's submit button
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_a_new_project_is_created_opened_and_announced(workspace):
    create_project("first", workspace)
    at = run_app("first")
    assert at.sidebar.selectbox[0].value == "first"
    create(at, "second")
    assert "second" in list_projects()
    assert at.session_state["project"] == "second"
    assert at.sidebar.selectbox[0].value == "second"
    assert at.query_params["project"] == ["second"] or at.query_params["project"] == "second"
    assert any("second" in t.value and "opened" in t.value for t in at.toast)
    assert at.sidebar.expander[0].proto.expanded is False
    at.run()  # later runs stay on it
    assert at.session_state["project"] == "second"
    assert at.sidebar.selectbox[0].value == "second"


def test_picking_another_project_still_switches(workspace):
    create_project("first", workspace)
    create_project("second", workspace)
    at = run_app("first")
    at.sidebar.selectbox[0].select("second").run()
    assert at.session_state["project"] == "second"
    at.run()
    assert at.sidebar.selectbox[0].value == "second"


def test_a_bad_project_name_is_explained_and_nothing_changes(workspace):
    create_project("first", workspace)
    at = create(run_app("first"), "CON")
    assert at.sidebar.error, "no message for a reserved name"
    assert at.session_state["project"] == "first"
    assert list_projects() == ["first"]
