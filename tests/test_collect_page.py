"""The Collect page: web search against the Bing stand-in (live progress, report, cancel, offline),
class-name checks, and photos from files, a zip and the webcam.

The page builds its own downloader, which resolves host names for real, so the stand-in's result
lists here point at 127.0.0.1 itself.
"""

from __future__ import annotations


import pytest
from streamlit.testing.v1 import AppTest

from core.jobs import collect as collect_job
from core.images import decode_image
from core.store.project import Project, create_project
from tests.bing_standin import BingStandin, bing_standin, loopback_only, query_seed, standin  # noqa: F401,F811 (fixtures)
from tests.browser import (assert_no_errors, browser_page, free_port, new_class, screenshot, streamlit_server,
                           wait_idle)
from tests.apptest import open_app
from tests.photos import photo_bytes, zip_bytes



def serve_photos(standin: BingStandin, query: str, n: int = 60) -> None:
    """Give `query` n distinct photos at 127.0.0.1 URLs, which the page's own downloader can reach."""
    start = query_seed(query)
    standin.results[query] = [f"http://127.0.0.1:{standin.port}/photo/{start + i}.{('jpg', 'png', 'webp')[i % 3]}"
                              for i in range(n)]


def open_page(project: Project) -> AppTest:
    return open_app(project.name, "pages/collect.py")


def start_search(at: AppTest, names: str, per_class: int = 5) -> AppTest:
    at.text_area(key="collect_names").input(names)
    at.slider(key="collect_per_class").set_value(per_class)
    at.button(key="collect_start").click()
    return at.run()


def finish(at: AppTest, project: Project, timeout: float = 30) -> AppTest:
    """Wait for the project's background run to end, then redraw."""
    assert collect_job.current(project).wait(timeout)
    return at.run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def stored_photos(project: Project) -> dict[str, int]:
    """Photos per class, after checking every file in the class folders is a whole, registered photo."""
    records = project.images()
    files = sorted(p for p in project.images_dir.rglob("*") if p.is_file())
    assert files == sorted(r.path for r in records)
    for path in files:
        decode_image(path.read_bytes())
    return {c.name: c.kept for c in project.classes()}


# ---- web search -----------------------------------------------------------------------------------


def test_a_search_runs_in_the_background_and_ends_with_a_report(project, standin):
    serve_photos(standin, "alpaca")
    serve_photos(standin, "llama", n=4)  # fewer than asked for
    local = f"http://127.0.0.1:{standin.port}"
    standin.results["alpaca"][:0] = [f"{local}/missing/1.jpg", f"{local}/page/1.jpg", f"{local}/page/2.jpg"]
    standin.photo_latency = 0.2  # the broken links, ranked first, are answered before the class is full
    at = open_page(project)
    assert "none yet" in texts(at.markdown)

    at = finish(start_search(at, "alpaca\nllama", per_class=6), project)

    assert not at.exception and not at.error
    assert "Done: 10 new photos" in texts(at.success)
    assert "ran out of new results for llama" in texts(at.info)
    table = at.dataframe[0].value
    assert table["Class"].tolist() == ["alpaca", "llama"]
    assert table["Saved"].tolist() == ["6 of 6", "4 of 6"]
    assert table["Failed links"].tolist() == [3, 0]
    assert table["Why they failed"].tolist() == ["not a picture (2), web error 404 (1)", "—"]  # not "404 1"
    assert set(table.columns) >= {"Copies skipped", "Seconds"}
    assert "review" in [link.proto.page for link in at.get("page_link")]
    assert stored_photos(project) == {"alpaca": 6, "llama": 4}
    assert "alpaca · 6" in texts(at.markdown)  # the overview counts the new photos
    assert not at.button(key="collect_start").disabled

    at.button(key="collect_clear").click().run()
    assert not at.dataframe and collect_job.current(project) is None


def test_progress_is_drawn_while_running_and_cancel_keeps_whole_photos(project, standin):
    standin.latency = 0.3
    serve_photos(standin, "alpaca")
    at = start_search(open_page(project), "alpaca", per_class=40)

    assert at.button(key="collect_start").disabled
    assert "Searching the web" in texts(at.markdown)
    [bar] = at.get("progress")
    assert "alpaca" in bar.proto.text and "of 40" in bar.proto.text

    at.button(key="collect_cancel").click().run()
    at = finish(at, project, timeout=10)

    assert "Search cancelled" in texts(at.warning)
    saved = at.dataframe[0].value["Saved"][0]
    assert stored_photos(project).get("alpaca", 0) == int(saved.split(" of ")[0]) < 40


def test_a_refreshed_page_finds_the_running_search_again(project, standin):
    standin.latency = 0.3
    serve_photos(standin, "alpaca")
    start_search(open_page(project), "alpaca", per_class=30)

    again = open_page(project)  # a new browser session, as after a refresh

    assert "Searching the web" in texts(again.markdown) and again.button(key="collect_start").disabled
    assert again.text_area(key="collect_names").value == "alpaca"  # the box still shows what is searched
    again.button(key="collect_cancel").click().run()
    assert "Search cancelled" in texts(finish(again, project, timeout=10).warning)


def test_offline_search_says_so_once_and_leaves_the_project_untouched(project, standin, monkeypatch):
    monkeypatch.setenv("TRANSFERLAB_SEARCH_URL", f"http://127.0.0.1:{free_port()}/images/async")
    at = finish(start_search(open_page(project), "alpaca\nllama"), project, timeout=15)

    assert not at.exception
    [error] = at.error
    assert error.value.startswith("Could not reach Bing image search")
    assert "#add-your-own-photos" in texts(at.markdown)
    assert not at.dataframe
    assert project.class_names() == [] and not any(project.images_dir.iterdir())


@pytest.mark.parametrize("names, problems", [
    ("", ["Type at least one class name"]),
    ("cats\na/b\nCats\n", ["Line 2: The class name 'a/b' contains a character", "Line 3: 'Cats' is already on line 1"]),
])
def test_class_names_are_checked_before_anything_starts(project, names, problems):
    at = start_search(open_page(project), names)

    [error] = at.error
    assert error.value.startswith("Please fix the class names")
    for problem in problems:
        assert problem in error.value.replace("\\", "")  # written into Markdown as plain text
    assert collect_job.current(project) is None


# ---- your own photos ------------------------------------------------------------------------------


def test_uploaded_files_go_into_a_new_class_with_reasons_for_the_rest(project):
    at = open_page(project)
    assert at.button(key="upload_files_add").disabled  # no class yet
    at.text_input(key="upload_new_class").input("cats").run()
    at.file_uploader(key="upload_files").set_value(
        [("a.jpg", photo_bytes(1), "image/jpeg"), ("b.jpg", photo_bytes(2), "image/jpeg"), ("notes.txt", b"hello", "text/plain")])
    at.button(key="upload_files_add").click().run()

    assert "2 photos added, 1 rejected. Into: cats (2)." in texts(at.success)
    assert "notes.txt" in texts(at.warning) and "not a picture" in texts(at.warning)
    assert stored_photos(project) == {"cats": 2}
    assert at.selectbox(key="upload_class").value == "cats"  # the new class is now picked

    at.button(key="upload_files_add").click().run()  # the form was cleared: nothing is imported twice
    assert stored_photos(project) == {"cats": 2}


def test_a_bad_new_class_name_is_explained(project):
    at = open_page(project)
    at.text_input(key="upload_new_class").input("a/b").run()
    assert "can't be in a folder name" in texts(at.error)
    assert at.button(key="upload_files_add").disabled


def test_a_zip_with_folders_makes_classes_and_a_flat_zip_needs_a_class(project):
    project.add_class("bees")
    at = open_page(project)
    folders = zip_bytes({"set/ants/1.jpg": photo_bytes(1), "set/ants/2.jpg": photo_bytes(2), "set/bees/3.jpg": photo_bytes(3)})
    at.file_uploader(key="upload_zip").set_value(("set.zip", folders, "application/zip"))
    at.button(key="upload_zip_add").click().run()
    assert "3 photos added. Into: ants (2), bees (1)." in texts(at.success)

    at.selectbox(key="upload_class").set_value("bees")
    flat = zip_bytes({"4.jpg": photo_bytes(4), "5.jpg": photo_bytes(5)})
    at.file_uploader(key="upload_zip").set_value(("flat.zip", flat, "application/zip"))
    at.button(key="upload_zip_add").click().run()
    assert "2 photos added. Into: bees (2)." in texts(at.success)
    assert stored_photos(project) == {"ants": 2, "bees": 3}

    at.selectbox(key="upload_class").set_value("➕ New class…")
    at.file_uploader(key="upload_zip").set_value(("flat.zip", zip_bytes({"6.jpg": photo_bytes(6)}), "application/zip"))
    at.button(key="upload_zip_add").click().run()
    assert "choose a class" in texts(at.error)
    assert stored_photos(project) == {"ants": 2, "bees": 3}


def test_webcam_shots_are_added_one_by_one_with_a_counter(project):
    project.add_class("me")
    at = open_page(project)
    assert not at.camera_input  # the camera is not asked for until the toggle is on
    at.session_state["webcam_mode"] = "One photo at a time"  # live recording needs a real server: browser tests
    at.toggle(key="webcam_on").set_value(True).run()
    assert "0 webcam photos in **me**" in texts(at.caption)

    for seed in (1, 2):
        at.camera_input[0].set_value(("shot.jpg", photo_bytes(seed), "image/jpeg"))
        at.run()

    assert "2 webcam photos in **me**" in texts(at.caption)
    assert stored_photos(project) == {"me": 2}
    assert {r.source for r in project.images("me")} == {"webcam"}
    assert at.camera_input[0].value is None  # a fresh camera for the next shot


# ---- in a real browser ------------------------------------------------------------------------------


@pytest.mark.browser
def test_collect_in_the_browser(workspace, standin):
    standin.latency = 0.3
    for query in ("alpaca", "llama"):
        serve_photos(standin, query)
    project = create_project("camelids", workspace)
    env = {"TRANSFERLAB_SEARCH_URL": standin.endpoint, "TRANSFERLAB_ALLOW_PRIVATE_HOSTS": "1"}
    with streamlit_server(workspace, env=env) as url, browser_page(height=1800) as page:
        # Until app.py has run once, the server routes /collect to the bare pages/ file; the start page goes first.
        page.goto(f"{url}/?project={project.name}")
        page.get_by_text(f"Project “{project.name}”", exact=True).wait_for(timeout=60_000)
        page.goto(f"{url}/collect?project={project.name}")
        page.get_by_role("heading", name="Search the web").wait_for(timeout=60_000)
        wait_idle(page)
        screenshot(page, "collect_empty")

        names = page.get_by_role("textbox", name="Class names, one per line")
        names.fill("alpaca\nllama")
        names.press("Control+Enter")  # a habit from chat boxes: must not start a search before the slider is set
        wait_idle(page)
        assert not page.get_by_text("Searching the web").count()
        slider = page.get_by_role("slider")
        slider.focus()
        slider.press("Home")  # 5
        for _ in range(3):
            slider.press("ArrowRight")  # 20
        page.get_by_role("button", name="Start searching").click()
        page.get_by_text("Searching the web").wait_for(timeout=20_000)
        page.wait_for_timeout(2500)
        screenshot(page, "collect_running")

        page.get_by_text("Done: 40 new photos").wait_for(timeout=60_000)
        wait_idle(page)
        assert_no_errors(page)
        screenshot(page, "collect_report")

        page.get_by_role("tab", name="Zip file").click()
        new_class(page, "vicuna")
        archive = workspace / "vicuna.zip"
        archive.write_bytes(zip_bytes({f"v{seed}.jpg": photo_bytes(seed) for seed in range(6)} | {"notes.txt": b"hello"}))
        page.get_by_role("tabpanel").locator('input[type="file"]').set_input_files(str(archive))
        page.get_by_role("button", name="Import zip").click()
        page.get_by_text("6 photos added").wait_for(timeout=120_000)
        wait_idle(page)
        screenshot(page, "collect_zip")

    assert stored_photos(project) == {"alpaca": 20, "llama": 20, "vicuna": 6}
