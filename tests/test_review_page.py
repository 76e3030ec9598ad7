"""The Review page (reject, restore, move, delete, duplicates, classes, warnings, suspects) and core/model/suspects.py."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.model import suspects
from core.model.embed import EmbedResult
from core.intake.ingest import import_folder
from core.store.project import Project, create_project, open_project
from tests.browser import assert_no_errors, browser_page, screenshot, streamlit_server, wait_idle
from tests.conftest import shared_dataset
from tests.apptest import no_exceptions, open_app
from tests.photos import class_photo_bytes, photo_bytes

ROOT = Path(__file__).resolve().parents[1]
CHECK_TIMEOUT = 120  # seconds: generous, for a loaded machine


# ---- helpers ----------------------------------------------------------------------------------


def fill(project: Project, cats: int = 12, dogs: int = 12) -> None:
    """Two classes of synthetic photos; cat photos are uploads, dog photos come from a web search."""
    for i in range(cats):
        project.add_image("cats", photo_bytes(i), source="upload", original_name=f"cat{i}.jpg")
    for i in range(dogs):
        project.add_image("dogs", photo_bytes(100 + i), source="web", source_url=f"https://example.org/dog{i}.jpg",
                          query="dog photo")


def ids(project: Project, class_name: str) -> list[int]:
    return [r.id for r in project.images(class_name)]


def open_review(project: Project, tab: str | None = None) -> AppTest:
    at = open_app(project.name, "pages/review.py")
    if tab:
        at.session_state["review_tab"] = next(t.label for t in at.tabs if tab in t.label)
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def box_of(at: AppTest, key: str):
    """The innermost block holding the widget with this key (the bordered box it sits in, with its button)."""
    def search(block):
        for child in block.children.values():
            if getattr(child, "key", None) == key:
                return block
            if hasattr(child, "children") and (found := search(child)) is not None:
                return found
        return None

    return search(at.main)


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def find_suspects(at: AppTest, project: Project) -> AppTest:
    """Click Find suspects, wait for the background check to end, and draw the page again."""
    click(at, "find_suspects")
    assert suspects.current_check(project).wait(CHECK_TIMEOUT), "the check is still running"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# ---- photos grid ------------------------------------------------------------------------------


def test_without_a_project_it_asks_for_one(workspace):
    at = open_app(path="pages/review.py")
    assert "Create a project first" in texts(at.info)


def test_without_photos_it_links_to_collect(project):
    at = open_review(project)
    assert "no photos yet" in texts(at.info)
    assert any("collect" in str(link.proto.page).lower() for link in at.get("page_link"))


def test_reject_with_reason_then_restore(project):
    fill(project)
    first, second = ids(project, "cats")[:2]
    at = open_review(project)
    assert at.selectbox(key="grid_class").value == "cats"
    at.checkbox(key=f"pick_{first}").check()
    at.checkbox(key=f"pick_{second}").check()
    at.run()
    at.selectbox(key="reject_reason").select("poor quality")
    at.run()
    click(at, "reject_selected")
    assert {project.image(i).status for i in (first, second)} == {"rejected"}
    assert project.image(first).reject_reason == "poor quality"
    assert "Rejected 2 photos" in texts(at.toast)
    assert f"pick_{first}" not in [c.key for c in at.checkbox]  # the kept filter hides them now

    at.segmented_control(key="grid_status").set_value("rejected").run()
    assert [c.key for c in at.checkbox] == [f"pick_{first}", f"pick_{second}"]
    assert "poor quality" in texts(at.caption)
    at.checkbox(key=f"pick_{first}").check().run()
    click(at, "restore_selected")
    assert project.image(first).status == "kept" and project.image(first).reject_reason is None
    assert project.image(second).status == "rejected"


def test_a_photo_whose_file_has_gone_shows_a_line_instead_of_breaking_the_grid(project):
    fill(project, cats=3, dogs=3)
    gone = project.images("cats")[0]
    gone.path.unlink()  # deleted from another tab a moment ago, or by hand
    assert project.thumbnail(gone) is None
    at = open_review(project)
    assert texts(at.caption).count("file is gone or cannot be read") == 1
    assert len(at.get("image")) == 2  # the class's other photos still show

def test_move_selected_to_another_class(project):
    fill(project)
    moving = ids(project, "cats")[0]
    at = open_review(project)
    at.checkbox(key=f"pick_{moving}").check().run()
    assert at.selectbox(key="move_target").options == ["dogs"]
    click(at, "move_selected")
    record = project.image(moving)
    assert record.class_name == "dogs" and record.path.exists() and record.path.parent.name == "dogs"


def test_delete_asks_first_then_removes_for_good(project):
    fill(project)
    doomed = ids(project, "cats")[0]
    path = project.image(doomed).path
    at = open_review(project)
    at.button(key="select_page").click().run()
    assert "12 photos selected" in texts(at.markdown)
    at.button(key="clear_selection").click().run()
    at.checkbox(key=f"pick_{doomed}").check().run()
    click(at, "delete_selected")
    assert "cannot be restored" in texts(at.warning) and path.exists()
    click(at, "cancel_delete")
    assert path.exists() and "cannot be restored" not in texts(at.warning)

    at.checkbox(key=f"pick_{doomed}").check().run()
    click(at, "delete_selected")
    click(at, "confirm_delete")
    assert not path.exists() and doomed not in ids(project, "cats")


def test_grid_pages_through_large_classes(project):
    fill(project, cats=60, dogs=3)
    at = open_review(project)
    assert len(at.checkbox) == 20 and "Photos 1–20 of 60" in texts(at.caption)
    at.pagination(key="grid_page").set_value(3).run()
    assert len(at.checkbox) == 20 and "Photos 41–60 of 60" in texts(at.caption)
    at.selectbox(key="grid_class").select("dogs").run()
    assert len(at.checkbox) == 3 and not at.pagination


def test_more_photos_a_page_on_request(project):
    """A page starts at 20 photos (each card costs the browser time to draw); the user can ask for 40 or 100, and a
    new size starts again at the first page."""
    fill(project, cats=60, dogs=3)
    at = open_review(project)
    at.pagination(key="grid_page").set_value(2).run()
    at.segmented_control(key="grid_per_page").set_value(40).run()
    assert len(at.checkbox) == 40 and "Photos 1–40 of 60" in texts(at.caption)
    assert at.pagination(key="grid_page").value == 1
    at.segmented_control(key="grid_per_page").set_value(100).run()
    assert len(at.checkbox) == 60 and not at.pagination


def test_a_photos_details_are_in_its_tooltip(project):
    """Where a photo came from is in the tooltip beside its tick box (no popover per photo: each cost the page
    time to draw)."""
    fill(project, cats=1, dogs=1)
    at = open_review(project)
    [tip] = [c.help for c in at.checkbox]
    assert "**Photo #1** in **cats**" in tip and "cat0.jpg" in tip and "kept" in tip
    at.selectbox(key="grid_class").select("dogs").run()
    [tip] = [c.help for c in at.checkbox]
    assert "dog photo" in tip and "[Open the original page ↗](https://example.org/dog0.jpg)" in tip


def test_resetting_the_grid_page_logs_no_widget_state_warning(project, monkeypatch, caplog):
    """Issue 20 item 10: the server log warned that "grid_page" had a default value but was also set via Session
    State (the filter's reset to page 1, on purpose); .streamlit/config.toml turns that warning off."""
    from streamlit.elements.lib import policies

    monkeypatch.setattr(policies, "_shown_default_value_warning", False)  # once per process otherwise
    fill(project, cats=60, dogs=3)
    at = open_review(project)
    at.pagination(key="grid_page").set_value(2).run()
    with caplog.at_level(logging.WARNING):
        at.segmented_control(key="grid_status").set_value("all").run()
    assert at.pagination(key="grid_page").value == 1
    assert not [r for r in caplog.records if "default value" in r.getMessage()]


def test_the_grid_reads_only_the_page_it_shows(project, monkeypatch):
    """With 50,000 photos a rerun must not read them all: the grid asks the project for one page."""
    fill(project, cats=45, dogs=3)
    asked = []
    images = Project.images
    monkeypatch.setattr(Project, "images", lambda self, *a, **k: asked.append((a, k)) or images(self, *a, **k))
    at = open_review(project)
    at.pagination(key="grid_page").set_value(3).run()
    assert len(at.checkbox) == 5 and "Photos 41–45 of 45" in texts(at.caption)
    grid = [(a, k) for a, k in asked if a[:1] == ("cats",)]
    assert grid and all(k.get("limit") == 20 for a, k in grid) and grid[-1][1]["offset"] == 40
    assert [r.id for r in project.images("cats", offset=40, limit=20)] == ids(project, "cats")[40:]


# ---- duplicates -------------------------------------------------------------------------------


def add_copies(project: Project) -> tuple[int, int]:
    """A photo and a bigger copy of it in the same class: (small id, large id)."""
    small = project.add_image("cats", photo_bytes(500, size=(240, 180)), source="upload").image_id
    large = project.add_image("cats", photo_bytes(500, size=(480, 360)), source="web").image_id
    return small, large


def test_keep_one_per_duplicate_group_keeps_the_largest(project):
    fill(project)
    small, large = add_copies(project)
    at = open_review(project, "Duplicates")
    assert at.button(key=f"dup_keep_{large}").label == "Keep this (largest)"
    click(at, "dup_keep_all")
    assert project.image(small).status == "rejected" and project.image(small).reject_reason == "duplicate"
    assert project.image(large).status == "kept"
    assert "No duplicates" in texts(at.success)


def test_keep_a_chosen_copy(project):
    fill(project)
    small, large = add_copies(project)
    at = open_review(project, "Duplicates")
    click(at, f"dup_keep_{small}")
    assert project.image(large).status == "rejected" and project.image(small).status == "kept"


# ---- classes and warnings ---------------------------------------------------------------------


def test_add_rename_and_delete_classes(project):
    fill(project)
    at = open_review(project, "Classes")
    assert at.get("vega_lite_chart"), "the balance chart is drawn"

    at.text_input(key="new_class").input("birds").run()
    click(at, "add_class")
    assert "birds" in project.class_names()
    assert "**birds** has no kept photos" in texts(at.warning)

    at.text_input(key="new_class").input("cats").run()
    click(at, "add_class")
    assert "already exists" in texts(at.error)

    at.selectbox(key="rename_from").select("dogs").run()
    at.text_input(key="rename_to").input("puppies").run()
    click(at, "rename_class")
    assert project.class_names() == ["birds", "cats", "puppies"]
    assert len(ids(project, "puppies")) == 12

    at.selectbox(key="delete_class_name").select("puppies").run()
    click(at, "delete_class")
    assert "its 12 photos" in texts(at.warning) and "puppies" in project.class_names()
    click(at, "confirm_delete_class_yes")
    assert project.class_names() == ["birds", "cats"]
    assert "Deleted the class puppies and its 12 photos" in texts(at.toast)


def test_a_class_that_cannot_be_added_is_explained_at_the_button(project):
    """Errors used to appear at the top of the page, out of sight of the button that was clicked."""
    fill(project)
    at = open_review(project, "Classes")
    click(at, "add_class")
    assert "The class name is empty" in texts(box_of(at, "new_class").error)
    assert len(at.error) == 1  # there only, not at the top of the page as well
    at.text_input(key="new_class").input("x" * 200).run()
    click(at, "add_class")
    assert "at most 64" in texts(box_of(at, "new_class").error)
    at.selectbox(key="rename_from").select("dogs").run()
    at.text_input(key="rename_to").input("cats").run()
    click(at, "rename_class")
    assert "already exists" in texts(box_of(at, "rename_to").error) and len(at.error) == 1


def test_the_class_shown_stays_chosen_while_another_tab_is_open(project):
    fill(project)
    at = open_review(project)
    at.selectbox(key="grid_class").select("dogs").run()
    at.session_state["review_tab"] = next(t.label for t in at.tabs if "Classes" in t.label)
    at.run()
    at.session_state["review_tab"] = next(t.label for t in at.tabs if "Photos" in t.label)
    at.run()
    assert at.selectbox(key="grid_class").value == "dogs"
    assert "No rejected photos" not in texts(at.info)


def test_balance_warnings(project):
    fill(project, cats=40, dogs=6)
    project.add_class("birds")
    project.add_image("fish", photo_bytes(900), source="upload")
    project.reject(ids(project, "fish"), "off-topic")
    warning = texts(open_review(project).warning)
    assert "**dogs** has only 6 kept photos" in warning
    assert "**birds** has no kept photos:" in warning
    assert "**fish** has no kept photos after cleaning" in warning
    assert "unbalanced" in warning and "**cats** has 40" in warning


def test_balanced_project_has_no_warnings(project):
    fill(project)
    assert not open_review(project).warning


def test_the_ready_line_counts_seldom_once_every_photo_is_ready(project, monkeypatch):
    """Issue 23: a count of the photos ready to train takes 0.3 s of the server's CPU at 50,000 photos, and every
    2 s on every page it kept a sixth of a core busy after all were ready. A page run counts once, and the line counts
    again every READINESS_POLL s while photos are being prepared, every READY_POLL s once all are."""
    import streamlit as st

    from core.model.preembed import Readiness
    from pages import ui

    fill(project)
    paces, counts, ready = [], [], [0]
    fragment = st.fragment

    def recorded(func=None, *, run_every=None):
        paces.append(run_every)
        return fragment(func, run_every=run_every)

    monkeypatch.setattr(st, "fragment", recorded)
    monkeypatch.setattr(ui.model, "readiness", lambda p: counts.append(1) or Readiness(ready[0], 24, "b"))
    at = no_exceptions(open_review(project))
    assert "0 of 24 photos prepared" in texts(at.caption) and len(counts) == 1
    assert ui.READINESS_POLL in paces and ui.READY_POLL not in paces
    paces.clear()
    ready[0] = 24
    assert "all 24 photos are prepared" in texts(open_review(project).caption)
    assert ui.READY_POLL in paces and ui.READINESS_POLL not in paces


# ---- suspects on the page (ranking faked: the real one is tested below) -------------------------


def fake_ranking(project: Project) -> list[suspects.Suspect]:
    cat, dog = ids(project, "cats")[0], ids(project, "dogs")[0]
    return [suspects.Suspect(cat, "cats", 0.95, 0.03, "dogs", 0.97, 2.5),
            suspects.Suspect(dog, "dogs", 0.6, 0.4, "dogs", 0.4, 3.1)]


def test_suspects_are_shown_and_acted_on(project, monkeypatch):
    fill(project)
    monkeypatch.setattr(suspects, "rank_suspects", lambda p, **_: fake_ranking(p))
    cat, dog = ids(project, "cats")[0], ids(project, "dogs")[0]
    at = find_suspects(open_review(project, "Suspects"), project)
    page = texts(at.markdown)
    assert "Labelled **cats**, looks like **dogs** (97%)" in page and "unlike most of its class" in page
    click(at, f"sus_move_{cat}")
    assert project.image(cat).class_name == "dogs"
    assert not any(b.key == f"sus_move_{cat}" for b in at.button), "a handled suspect leaves the list"
    assert "added or restored" not in texts(at.info), "moving a suspect does not make the ranking stale"
    click(at, f"sus_fine_{dog}")
    assert project.image(dog).status == "kept" and "Nothing left to check" in texts(at.success)

    project.add_image("cats", photo_bytes(77), source="upload")
    at.run()
    assert "added or restored" in texts(at.info)


def test_only_strong_evidence_gets_the_primary_move_button(project, monkeypatch):
    fill(project)
    cat, cat2, dog = ids(project, "cats")[0], ids(project, "cats")[1], ids(project, "dogs")[0]
    cat3 = ids(project, "cats")[2]
    agree = {"neighbours_like": 8, "neighbours_own": 0}
    ranking = [suspects.Suspect(cat, "cats", 0.9, 0.08, "dogs", 0.92, 1.0, **agree),   # clear: primary move
               suspects.Suspect(cat2, "cats", 0.5, 0.47, "dogs", 0.53, 1.0, **agree),  # a coin toss between two classes
               suspects.Suspect(dog, "dogs", 0.4, 0.3, "cats", 0.7, 1.0, **agree),     # above 50 % but not clearly above
               # the classifier is sure, but the photos most like it are cats too (look-alike product photos)
               suspects.Suspect(cat3, "cats", 0.9, 0.04, "dogs", 0.94, 1.0, neighbours_like=4, neighbours_own=5)]
    monkeypatch.setattr(suspects, "rank_suspects", lambda p, **_: ranking)
    at = find_suspects(open_review(project, "Suspects"), project)
    assert at.button(key=f"sus_move_{cat}").proto.type == "primary"
    for unsure in (cat2, dog, cat3):
        assert at.button(key=f"sus_move_{unsure}").proto.type != "primary"
    page = texts(at.markdown)
    assert "Labelled **cats**, looks like **dogs** (92%)" in page and "might be **dogs** (53%)" in page
    assert "might be **dogs** (94%)" in page
    assert "unsure" in texts(at.caption)
    assert "Of the 10 photos most like it, 4 are in dogs and 5 in cats." in texts(at.caption)


def test_the_suspect_ranking_survives_a_refresh_until_photos_change(project, monkeypatch):
    fill(project)
    calls = []
    monkeypatch.setattr(suspects, "rank_suspects", lambda p, **_: calls.append(1) or fake_ranking(p))
    find_suspects(open_review(project, "Suspects"), project)
    again = open_review(project, "Suspects")  # a new browser session, as after a refresh
    assert "looks like **dogs**" in texts(again.markdown) and len(calls) == 1
    assert "added or restored" not in texts(again.info)
    project.add_image("dogs", photo_bytes(555), source="upload")
    assert "added or restored" in texts(open_review(project, "Suspects").info)


def test_suspects_explain_when_there_are_too_few_photos(project):
    fill(project, cats=12, dogs=2)
    at = open_review(project, "Suspects")
    assert "Left out" in texts(at.caption) and "dogs" in texts(at.caption)
    find_suspects(at, project)
    assert "at least two classes" in texts(at.error)
    assert "at least two classes" in texts(open_review(project, "Suspects").error), "a refresh still says why"


def test_finding_suspects_runs_in_the_background_and_survives_a_refresh(project, monkeypatch):
    fill(project)
    release = threading.Event()

    def slow_ranking(p, on_progress=None, should_stop=None):
        for done in range(1, 25):
            on_progress(done, 24)
            if done == 5:
                assert release.wait(CHECK_TIMEOUT)
        return fake_ranking(p)

    monkeypatch.setattr(suspects, "rank_suspects", slow_ranking)
    at = click(open_review(project, "Suspects"), "find_suspects")  # returns at once: the check runs on its own
    assert at.button(key="find_suspects").disabled and at.button(key="stop_suspects")
    fresh = open_review(project, "Suspects")  # a refresh, or a second tab, while it runs
    assert fresh.button(key="find_suspects").disabled
    assert re.search(r"Looking at photo 5 of 24 .*\(\d+ s so far\)", fresh.get("progress")[0].proto.text)
    release.set()
    assert suspects.current_check(project).wait(CHECK_TIMEOUT)
    after = open_review(project, "Suspects")
    assert "looks like **dogs**" in texts(after.markdown)
    assert not [b for b in after.button if b.key == "stop_suspects"]
    assert not after.button(key="find_suspects").disabled


def test_on_a_big_project_the_check_waits_for_the_workers_turn_and_says_why(project, monkeypatch):
    """Issue 23: at 50,000 photos a check during a run's TFLite conversion took server and worker past 2 GB."""
    from core.jobs import turns

    fill(project)
    monkeypatch.setattr(turns, "BIG_PROJECT", 10)
    monkeypatch.setattr(suspects, "rank_suspects", lambda p, **_: fake_ranking(p))
    with turns.turn(alone=False):  # the worker, making downloads
        click(open_review(project, "Suspects"), "find_suspects")
        deadline = time.monotonic() + CHECK_TIMEOUT
        while "Waiting for the training process" not in suspects.current_check(project).view().text:
            assert time.monotonic() < deadline, suspects.current_check(project).view().text
            time.sleep(0.1)
        waiting = open_review(project, "Suspects")
        assert "could pass 2 GB of memory" in waiting.get("progress")[0].proto.text
        assert suspects.current_check(project).running
    assert suspects.current_check(project).wait(CHECK_TIMEOUT)
    assert "looks like **dogs**" in texts(open_review(project, "Suspects").markdown)


def test_a_running_check_can_be_stopped(project, monkeypatch):
    fill(project)
    started = threading.Event()

    def endless_ranking(p, on_progress=None, should_stop=None):
        started.set()
        while not should_stop():
            time.sleep(0.05)
        raise InterruptedError("stopped while embedding")

    monkeypatch.setattr(suspects, "rank_suspects", endless_ranking)
    at = click(open_review(project, "Suspects"), "find_suspects")
    assert started.wait(CHECK_TIMEOUT)
    click(at, "stop_suspects")
    assert suspects.current_check(project).wait(CHECK_TIMEOUT)
    after = open_review(project, "Suspects")
    assert "Check stopped" in texts(after.info) and suspects.remembered(project) is None
    assert not after.button(key="find_suspects").disabled


def test_the_check_leaves_converting_the_network_to_the_worker(project, monkeypatch):
    """Streamlit clears Keras's state after every page run: a conversion on the server's thread never finished."""
    from core.model import embed

    fill(project)
    asked = []
    monkeypatch.setattr(embed, "litert_ready", lambda spec: bool(asked))  # converted once the worker was asked
    monkeypatch.setattr(suspects.WORKER, "ask", lambda task, should_stop, **fields: asked.append((task, fields)) or {})
    monkeypatch.setattr(suspects, "rank_suspects", lambda p, **_: fake_ranking(p))
    at = find_suspects(open_review(project, "Suspects"), project)
    assert asked == [("backbone", {"backbone": suspects.DEFAULT_BACKBONE})]
    assert "looks like **dogs**" in texts(at.markdown)
    find_suspects(at, project)
    assert len(asked) == 1, "a converted network is not asked for again"

    monkeypatch.setattr(embed, "litert_ready", lambda spec: False)
    monkeypatch.setattr(suspects.WORKER, "ask", lambda task, should_stop, **fields: {"error": "MemoryError: full"})
    assert "could not be made ready: MemoryError: full" in texts(find_suspects(at, project).error)


@pytest.mark.slow
def test_a_check_on_a_fresh_cache_finishes_with_no_keras_in_the_server(tmp_path):
    """A new machine: nothing converted, nothing embedded. The worker converts the network; the server (this
    process) only runs it, through LiteRT."""
    script = ("import sys; from pathlib import Path; from tests.runs import two_class_folders; "
              "from core.intake.ingest import import_folder; from core.store.project import create_project; "
              "from core.model import suspects; from core.jobs.server import WORKER; "
              f"root = Path({str(tmp_path)!r}); project = create_project('fresh', root / 'ws'); "
              "import_folder(project, two_class_folders(root / 'data', train=6)  / 'train'); "
              "task = suspects.start_check(project); assert task.wait(600); WORKER.shutdown(); "
              "print(task.view().result, sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, "TRANSFERLAB_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "12 []"


# ---- core/model/suspects.py -------------------------------------------------------------------------


def clustered(n_classes: int = 4, per_class: int = 30, dim: int = 64, seed: int = 0):
    """Embedding-like vectors: positive, one cluster per class."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 2
    labels = np.repeat(np.arange(n_classes), per_class)
    return np.abs(centres[labels] + rng.normal(size=(len(labels), dim))).astype(np.float32), labels


def test_flipped_labels_rank_first_on_synthetic_embeddings():
    vectors, labels = clustered()
    noisy = labels.copy()
    flipped = [3, 40, 75, 110]
    noisy[flipped] = (labels[flipped] + 1) % 4
    scores = suspects.score_embeddings(vectors, noisy)
    assert set(np.argsort(-scores.score)[:4]) == set(flipped)
    assert (scores.predicted[flipped] == labels[flipped]).all(), "the classifier names the true class"
    assert np.median(scores.label_probability) > 0.7 and scores.label_probability[flipped].max() < 0.3
    assert ((scores.score >= 0) & (scores.score <= 1)).all()


def test_scoring_leaves_the_callers_vectors_as_they_were():
    """The check works on one float32 copy in place (it runs in the server: at 50,000 photos each copy is 256 MB);
    the caller's vectors, float32 or float64, are untouched unless it hands them over (`overwrite`)."""
    vectors, labels = clustered()
    for given in (vectors, vectors.astype(np.float64)):
        before = given.copy()
        suspects.score_embeddings(given, labels)
        assert np.array_equal(given, before)


def test_scoring_holds_at_most_one_working_copy_beside_the_solvers():
    """Issue 23: at 50,000 photos the check peaked at 1.4 GB in the server (a float64 copy of the vectors and two
    float32 ones at once: 4.0 times the vectors here). Now a float32 working copy beside the solver's copy and state
    (2.7), and no working copy when the caller hands its vectors over (1.7): measured with tracemalloc, which sees
    numpy's arrays, in units of the vectors' own size."""
    import tracemalloc

    vectors, labels = clustered(n_classes=20, per_class=500, dim=1_280)  # more photos than dimensions: no rotation

    def peak(overwrite: bool) -> float:
        given = vectors.copy()
        tracemalloc.start()
        suspects.score_embeddings(given, labels, overwrite=overwrite)
        size = tracemalloc.get_traced_memory()[1] / vectors.nbytes
        tracemalloc.stop()
        return size

    assert peak(overwrite=False) < 3.0
    assert peak(overwrite=True) < 2.0


def test_outlier_far_from_its_class_centre_scores_high():
    vectors, labels = clustered(n_classes=2)
    vectors[5] = np.abs(np.random.default_rng(9).normal(size=vectors.shape[1])) * 6  # off-topic: like nothing
    scores = suspects.score_embeddings(vectors, labels)
    assert scores.centre_distance[5] == scores.centre_distance[labels == 0].max() > 3
    assert np.argsort(-scores.score)[:3].tolist().count(5) == 1


@pytest.mark.slow
def test_look_alike_product_photos_get_no_confident_move_advice():
    """Coffee, juice and pasta photos from shelves (groceries25, 40 each, labelled right): the cross-validated
    classifier alone advised 7 confident moves, all wrong; a flipped label is still advised back."""
    from core.model.backbones import get_backbone
    from core.model.embed import embed_files
    from core.images import sha256_hex

    root = shared_dataset("groceries25") / "train"
    paths = [p for name in ("coffee", "juice", "pasta") for p in sorted((root / name).glob("*.jpg"))[:40]]
    labels = np.repeat(np.arange(3), 40)
    result = embed_files(paths, [sha256_hex(p.read_bytes()) for p in paths], get_backbone("efficientnet_lite0"))
    assert result.ok == list(range(120))

    def confident_moves(given: np.ndarray) -> list[int]:
        scores = suspects.score_embeddings(result.vectors, given)
        ranked = [suspects.Suspect(i, str(given[i]), 0, float(scores.label_probability[i]),
                                   str(scores.predicted[i]), float(scores.predicted_probability[i]), 0,
                                   neighbours_like=int(scores.neighbours_like[i]),
                                   neighbours_own=int(scores.neighbours_own[i]))
                  for i in range(len(given))]
        return [s.image_id for s in ranked if s.clearly_elsewhere]

    assert len(confident_moves(labels)) <= 2
    flipped = labels.copy()
    flipped[[3, 45, 90]] = [1, 2, 0]  # a coffee photo put in juice, juice in pasta, pasta in coffee
    moves = confident_moves(flipped)
    assert set(moves) & {3, 45, 90} and len(set(moves) - {3, 45, 90}) <= 2


def test_rank_suspects_refuses_without_two_usable_classes(project):
    fill(project, cats=12, dogs=2)
    with pytest.raises(ValueError, match="at least two classes"):
        suspects.rank_suspects(project)
    assert suspects.too_small({c.name: c.kept for c in project.classes()}) == ["dogs"]


def test_rank_suspects_maps_scores_to_photos(project, monkeypatch):
    """With the embedding faked: unreadable photos and classes too small to judge are left out."""
    fill(project, cats=12, dogs=12)
    project.add_image("birds", photo_bytes(300), source="upload")
    project.add_image("birds", photo_bytes(301), source="upload")
    records = {r.sha256: r for r in project.images()}
    wrong = ids(project, "dogs")[3]

    def fake_embed(paths, shas, spec, cache=None, on_progress=None, should_stop=None):
        assert "birds" not in {records[s].class_name for s in shas}
        vectors, labels = clustered(n_classes=2, per_class=len(shas))
        like_cats, like_dogs = vectors[labels == 0], vectors[labels == 1]
        rows = [like_cats[i] if (records[s].class_name == "cats") != (records[s].id == wrong) else like_dogs[i]
                for i, s in enumerate(shas)]
        on_progress(len(shas), len(shas))
        return EmbedResult(np.stack(rows[1:]), list(range(1, len(shas))), {0: "unreadable"}, len(shas) - 1, 0.1)

    monkeypatch.setattr("core.model.embed.embed_files", fake_embed)
    progress = []
    ranking = suspects.rank_suspects(project, on_progress=lambda done, total: progress.append((done, total)))
    assert progress == [(24, 24)]
    assert len(ranking) == 23 and ranking[0].image_id == wrong
    assert ranking[0].class_name == "dogs" and ranking[0].predicted_class == "cats"
    assert [s.score for s in ranking] == sorted((s.score for s in ranking), reverse=True)


@pytest.mark.slow
def test_real_backbone_puts_a_mislabeled_photo_on_top(project):
    for seed in range(12):
        project.add_image("stripes", class_photo_bytes(0, seed), source="upload")
        project.add_image("rings", class_photo_bytes(1, seed), source="upload")
    planted = project.add_image("rings", class_photo_bytes(0, 99), source="upload").image_id  # stripes, labelled rings
    ranking = suspects.rank_suspects(project)
    assert len(ranking) == 25
    assert ranking[0].image_id == planted and ranking[0].predicted_class == "stripes"
    again = suspects.rank_suspects(open_project(project.name))  # cached: same answer
    assert [s.image_id for s in again] == [s.image_id for s in ranking]


# ---- in a real browser ------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.browser
def test_browser_review_flowers(workspace):
    source = shared_dataset("flowers5") / "train"
    project = create_project("flowers", workspace)
    import_folder(project, source)
    rng = np.random.default_rng(0)
    names = project.class_names()
    for i, name in enumerate(names):  # one photo per class in the wrong class, for the suspects to find
        project.move([int(rng.choice(ids(project, name)))], names[(i + 1) % len(names)])
    project.reject(ids(project, "roses")[:3], "off-topic")
    original = project.images("tulips")[0]
    bigger = io.BytesIO()
    Image.open(original.path).resize((original.width * 2, original.height * 2)).save(bigger, "JPEG", quality=90)
    project.add_image("tulips", bigger.getvalue(), source="upload", original_name="tulip-copy.jpg")

    with streamlit_server(workspace) as url, browser_page(height=2200) as page:
        # A deep link as the very first request of a fresh server runs the page without app.py
        # (Streamlit's pages/ folder auto-discovery), so the first visit goes to the root.
        page.goto(f"{url}/?project=flowers")
        page.get_by_text("Project “flowers”", exact=True).wait_for(timeout=60_000)
        page.goto(f"{url}/review?project=flowers")
        page.get_by_text("Review your photos").wait_for(timeout=60_000)
        wait_idle(page)
        page.get_by_text("Photos 1–20 of").wait_for()
        page.locator('[data-testid="stCheckbox"]').nth(1).click()
        wait_idle(page)
        page.get_by_text("1 photo selected").wait_for()
        settle_and_shoot(page, "review_grid")

        open_tab(page, "Suspects")
        page.get_by_role("button", name="Find suspects").click()
        page.get_by_text("Suspicion").first.wait_for(timeout=600_000)  # the first check converts the backbone
        wait_idle(page)
        assert page.get_by_text("looks like").count() >= 3
        settle_and_shoot(page, "review_suspects")

        open_tab(page, "Duplicates")
        page.get_by_text("Keep this (largest)").wait_for()
        settle_and_shoot(page, "review_duplicates")

        open_tab(page, "Classes")
        page.locator('[data-testid="stVegaLiteChart"]').wait_for()
        settle_and_shoot(page, "review_balance")


def open_tab(page, name: str) -> None:
    page.get_by_role("tab").filter(has_text=name).click()
    wait_idle(page)


def settle_and_shoot(page, name: str) -> None:
    """Let thumbnails and charts paint, check for errors, keep a screenshot."""
    page.wait_for_timeout(1500)
    assert_no_errors(page)
    screenshot(page, name)


@pytest.mark.browser
def test_browser_class_dropdown_counts_follow_a_reject(workspace):
    project = create_project("pets", workspace)
    fill(project, cats=6, dogs=3)
    with streamlit_server(workspace) as url, browser_page() as page:
        page.goto(f"{url}/?project=pets")
        page.get_by_text("Project “pets”", exact=True).wait_for(timeout=60_000)
        page.goto(f"{url}/review?project=pets")
        page.get_by_text("Photos 1–6 of 6").wait_for(timeout=60_000)
        wait_idle(page)
        dropdown = page.locator('[data-testid="stMain"] [data-testid="stSelectbox"] input').first
        assert "6 kept · 0 rejected" in dropdown.input_value()
        page.locator('[data-testid="stCheckbox"]').first.click()
        wait_idle(page)
        page.get_by_role("button", name="Reject", exact=True).click()
        page.get_by_text("Photos 1–5 of 5").wait_for(timeout=60_000)
        wait_idle(page)
        screenshot(page, "review_dropdown_after_reject")
        assert "5 kept · 1 rejected" in dropdown.input_value()
        assert_no_errors(page)
