"""What comes from outside is shown as text, never as markup; error details stay on the server;
uploads are capped (issue 12)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.browser import assert_no_errors, browser_page, screenshot, streamlit_server, wait_idle
from tests.apptest import no_exceptions, open_app
from tests.photos import photo_bytes

ROOT = Path(__file__).resolve().parents[1]
HOSTILE_URL = "https://example.org/a.jpg)![pwned](https://evil.example/x.png)[click](https://evil.example/"
HOSTILE_NAME = "**bold** [link](https://evil.example) :red[alarm] <b>x</b> `code`.jpg"


def _open(project, page: str) -> AppTest:
    return no_exceptions(open_app(project.name, page))


def _markdown(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in at.markdown)


def test_review_details_escape_urls_and_file_names(project):
    project.add_image("cats", photo_bytes(1), source="web", source_url=HOSTILE_URL, original_name=HOSTILE_NAME,
                      query="cat [x](https://evil.example)")
    at = _open(project, "pages/review.py")
    shown = _markdown(at) + "\n".join(c.help for c in at.checkbox)  # a photo's details: its tick box's tooltip
    assert "Open the original page" in shown
    assert "](https://evil.example" not in shown  # neither an image nor a link can be injected
    assert "**bold**" not in shown and "<b>" not in shown and ":red[" not in shown
    assert "https://example.org/a.jpg%29" in shown  # the real address, its ")" encoded


def test_a_non_web_source_url_is_not_a_link(project):
    project.add_image("cats", photo_bytes(1), source="web", source_url="javascript:alert(1)")
    at = _open(project, "pages/review.py")
    assert "javascript" not in _markdown(at) + "\n".join(c.help for c in at.checkbox)


def test_error_details_stay_on_the_server():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["client"]["showErrorDetails"] == "none"


def test_an_upload_of_too_many_files_is_refused_with_a_message(project):
    at = _open(project, "pages/collect.py")
    at.text_input(key="upload_new_class").input("cats").run()
    too_many = 1001
    at.file_uploader(key="upload_files").set_value([(f"{i}.jpg", b"x", "image/jpeg") for i in range(too_many)])
    at.button(key="upload_files_add").click().run()
    errors = "\n".join(str(e.value) for e in at.error)
    assert "at most 1,000 at a time" in errors and "zip" in errors
    assert project.class_names() == []


def test_file_names_in_an_import_report_are_escaped(project):
    at = _open(project, "pages/collect.py")
    at.text_input(key="upload_new_class").input("cats").run()
    at.file_uploader(key="upload_files").set_value([("[x](https://evil.example).jpg", b"not a photo", "image/jpeg")])
    at.button(key="upload_files_add").click().run()
    warnings = "\n".join(str(e.value) for e in at.warning)
    assert "not a picture" in warnings and "](https://evil.example" not in warnings


@pytest.mark.browser
def test_hostile_names_render_as_plain_text_in_the_browser(workspace):
    from core.store.project import create_project

    project = create_project("hostile", workspace)
    project.add_image("cats", photo_bytes(1), source="web", source_url=HOSTILE_URL, original_name=HOSTILE_NAME)
    with streamlit_server(workspace) as url, browser_page() as page:
        page.goto(f"{url}/review?project=hostile")
        page.get_by_text("Review your photos").wait_for(timeout=60_000)
        wait_idle(page)
        page.locator("[data-testid='stCheckbox'] [data-testid='stTooltipIcon']").first.hover()
        page.get_by_text("Open the original page").wait_for()
        wait_idle(page)
        screenshot(page, "hostile-review-details")
        assert_no_errors(page)
        assert page.locator("img[src*='evil.example']").count() == 0
        assert page.locator("a[href^='https://evil.example']").count() == 0  # no link, not even an automatic one
        href = page.get_by_role("link", name="Open the original page").get_attribute("href")
        assert href.startswith("https://example.org/a.jpg%29")
        assert page.get_by_text(":red[alarm]").count() == 1  # shown as typed, not as red text
