"""The project sidebar: creating a project opens it, says so and closes the New-project panel."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store.project import create_project, list_projects
from tests.browser import assert_no_errors, browser_page, screenshot, streamlit_server, wait_idle

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


@pytest.mark.browser
def test_browser_an_unknown_address_lands_on_start_without_page_not_found(workspace):
    create_project("pets", workspace)
    with streamlit_server(workspace) as url, browser_page() as page:
        page.goto(f"{url}/?project=pets")
        wait_idle(page)
        for path in ("start", "no-such-page"):
            page.goto(f"{url}/{path}?project=pets")
            page.get_by_text("Project “pets”", exact=True).wait_for(timeout=60_000)
            wait_idle(page)
            assert page.get_by_text("Page not found").count() == 0, path
            assert "project=pets" in page.url
        page.goto(f"{url}/review?project=pets")  # a real page is still reached by its address
        page.get_by_text("Review your photos").or_(page.get_by_text("no photos yet")).first.wait_for(timeout=60_000)
        assert_no_errors(page)


@pytest.mark.browser
def test_browser_a_fresh_server_first_asked_for_a_page_runs_it_inside_the_app(workspace):
    """The first request a server gets is for /review: it must come out as app.py's Review page (navigation and
    project picker), not pages/review.py run bare from Streamlit's pages/ folder mode (pages/ui.py's shim)."""
    create_project("pets", workspace)
    with streamlit_server(workspace) as url, browser_page() as page:
        page.goto(f"{url}/review?project=pets")
        page.get_by_text("Review your photos").or_(page.get_by_text("no photos yet")).first.wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_text("3 · Train").first.wait_for(timeout=30_000)  # app.py's navigation, not the pages/ file list
        assert "/review" in page.url
        assert_no_errors(page)


# Every link text the sidebar's page navigation ever shows, recorded from the first paint on.
RECORD_NAVIGATION = """
window.navigationSeen = new Set();
new MutationObserver(() => {
  for (const link of document.querySelectorAll('[data-testid="stSidebarNav"] a'))
    window.navigationSeen.add(link.innerText.replace(/\\s+/g, ' ').trim());
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
APP_PAGES = {"🏠 Start", "📷 1 · Collect photos", "🧹 2 · Review dataset", "🏋️ 3 · Train", "📊 4 · Results & export",
             "🔮 5 · Try it"}


@pytest.mark.browser
def test_browser_the_first_page_after_a_start_never_lists_the_pages_folder(workspace):
    """Item 10 of issue 20: a server's first run (Streamlit's pages/ folder mode) sent every pages/*.py to the
    sidebar (app, charts, ... ui, webcam) before app.py's navigation replaced them. From the first paint on, the
    sidebar shows only the app's pages, in the first tab and in the next."""
    with streamlit_server(workspace) as url, browser_page() as page:
        page.add_init_script(RECORD_NAVIGATION)
        page.goto(url, wait_until="commit")
        page.wait_for_selector('[data-testid="stSidebarNav"]', timeout=120_000)
        screenshot(page, "sidebar-first-load")  # as early as the sidebar has a navigation
        wait_idle(page, 120_000)
        assert page.evaluate("[...window.navigationSeen]") and set(page.evaluate("[...window.navigationSeen]")) \
            == APP_PAGES
        page.goto(f"{url}/train")  # another page, a new session
        wait_idle(page, 120_000)
        assert set(page.evaluate("[...window.navigationSeen]")) == APP_PAGES
        assert_no_errors(page)
