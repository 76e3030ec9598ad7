"""The repair tools never delete a photo's only copy; what the folders say wins (issue 19, items 1, 2, 3, 7)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import time

import pytest

from core.store.project import Project, create_project, open_project, restore_backup
from core.store import db as storage_db
from core.store.recovery import RECOVERED_DIR
from tests.photos import photo_bytes
from tests.test_integrity import CHILD_TIMEOUT, consistent, spawn


def contents(project: Project) -> set[str]:
    """Digests of every photo file under images/ (what a user would call 'my photos')."""
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in project.images_dir.rglob("*") if p.is_file()}


def stored(project: Project) -> dict[str, int]:
    """Photos per class, as the rows say."""
    return {c.name: c.kept + c.rejected for c in project.classes()}


@pytest.fixture
def cats(project):
    for i in range(15):
        project.add_image("cats", photo_bytes(i), source="upload", original_name=f"cat{i}.jpg")
    project.add_image("dogs", photo_bytes(100), source="upload", original_name="dog.jpg")
    return project


def test_a_photo_moved_by_hand_into_another_folder_takes_that_class(project):
    result = project.add_image("a", photo_bytes(1), source="upload")
    (project.images_dir / "b").mkdir()
    moved = project.images_dir / "b" / result.path.name
    os.replace(result.path, moved)
    assert project.take_in_stray_files() == 1
    assert moved.exists(), "the only copy was deleted"
    assert project.image(result.image_id).class_name == "b" and project.image(result.image_id).path == moved
    consistent(project)


def test_a_class_folder_renamed_by_hand_is_that_class_renamed(cats):
    before = contents(cats)
    os.rename(cats.images_dir / "cats", cats.images_dir / "kittens")
    assert cats.take_in_stray_files() == 15
    assert contents(cats) == before
    assert stored(cats) == {"dogs": 1, "kittens": 15}
    consistent(cats)


def test_a_folder_renamed_by_hand_to_a_name_taken_becomes_a_class_of_a_free_name(cats):
    before = contents(cats)
    os.rename(cats.images_dir / "cats", cats.images_dir / "DOGS")  # 'dogs' exists: the same name to the store
    assert cats.take_in_stray_files() == 15
    assert contents(cats) == before
    assert stored(cats) == {"DOGS (2)": 15, "dogs": 1}
    consistent(cats)


def test_a_second_copy_is_removed_only_when_its_bytes_are_kept(cats):
    photo = cats.images("dogs")[0]
    copy = cats.images_dir / "cats" / "copy-of-dog.jpg"
    shutil.copyfile(photo.path, copy)
    assert cats.take_in_stray_files() == 0
    assert not copy.exists() and photo.path.exists()
    consistent(cats)


def test_a_file_that_is_not_a_photo_is_set_aside_not_deleted(cats):
    junk = cats.images_dir / "cats" / "notes.txt"
    junk.write_text("my notes")
    assert cats.take_in_stray_files() == 0
    assert (cats.meta_dir / RECOVERED_DIR / "cats" / "notes.txt").read_text() == "my notes"
    consistent(cats)


def older_rows(project: Project, how: str) -> bytes:
    """The database as it is now, to put back later as a restored backup or a lost WAL would."""
    con = sqlite3.connect(project.db_path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    if how == "backup":
        assert project.db.backup_if_due()
    return project.db_path.read_bytes()


@pytest.mark.parametrize("how", ["backup", "lost WAL"])
def test_older_rows_than_the_folders_lose_no_photo(cats, workspace, monkeypatch, how):
    """A restored backup, or a database that lost its last changes, after renames and moves made since."""
    monkeypatch.setattr(storage_db, "BACKUP_INTERVAL", 0)
    old = older_rows(cats, how)
    cats.rename_class("cats", "kittens")
    cats.move([cats.images("kittens")[0].id], "dogs")
    cats.add_image("dogs", photo_bytes(200), source="upload")
    cats.add_image("birds", photo_bytes(300), source="upload")
    before, name = contents(cats), cats.name
    if how == "backup":
        cats.db_path.write_bytes(b"")
        project = restore_backup(name, workspace)
    else:
        for suffix in ("-wal", "-shm"):
            cats.db_path.with_name(cats.db_path.name + suffix).unlink(missing_ok=True)
        cats.db_path.write_bytes(old)
        project = open_project(name, workspace)
        project.take_in_stray_files()
    assert contents(project) == before, "a photo file was deleted"
    assert stored(project) == {"birds": 1, "dogs": 3, "kittens": 14}
    consistent(project)


CRASH_IN_RENAME = """
    import os, sys
    from pathlib import Path
    import core.store.journal as journal
    from core.store.project import Project
    real, calls = os.replace, []
    def replace(src, dst):
        calls.extend([1] if os.path.isdir(src) else [])
        if len(calls) == 2:  # between the two folder renames
            os._exit(3)
        real(src, dst)
    journal.os.replace = replace
    Project(Path(sys.argv[1])).rename_class("cats", "kittens")
"""


def crash_in_rename(project: Project) -> None:
    child = spawn(CRASH_IN_RENAME, str(project.meta_dir))
    _, err = child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == 3, err
    assert list(project.images_dir.glob(".tmp-rename-*")), "the crash left the class in its temporary folder"


def test_a_long_lived_writer_finishes_a_crashed_rename_before_its_own_write(cats):
    """A search running in another process keeps its Project; its next photo must not remake the old folder."""
    long_lived = Project(cats.meta_dir)
    crash_in_rename(cats)
    long_lived.add_image("cats", photo_bytes(50), source="upload")
    reopened = Project(cats.meta_dir)
    assert stored(reopened) == {"cats": 16, "dogs": 1}
    consistent(reopened)


def test_the_repair_of_a_crashed_rename_merges_into_a_folder_remade_meanwhile(cats):
    """An older version's writer (or a user) remade the old folder: the repair merges, never deletes."""
    crash_in_rename(cats)
    (cats.images_dir / "cats").mkdir()
    (cats.images_dir / "cats" / "new.jpg").write_bytes(photo_bytes(60))
    before = contents(cats)
    reopened = Project(cats.meta_dir)
    assert contents(reopened) == before
    assert reopened.take_in_stray_files() == 1
    assert stored(reopened) == {"cats": 16, "dogs": 1}
    consistent(reopened)


def test_a_zero_byte_journal_temp_file_left_by_a_crash_is_removed(project):
    project.journal_dir.mkdir(exist_ok=True)
    leftover = project.journal_dir / ".tmp-0123456789abcdef.json"
    leftover.write_bytes(b"")
    old = time.time() - 2 * 3600
    os.utime(leftover, (old, old))
    from core.store import project as store

    store._LOOKED_FOR_LEFTOVERS.clear()  # the next process to open the project, as after a crash
    Project(project.meta_dir)
    assert not leftover.exists()


def test_a_damaged_inner_page_gets_the_restore_and_zip_offer(workspace, monkeypatch):
    """Header intact, a page inside garbled: the Start page explains it, as for a damaged header."""
    from tests.apptest import no_exceptions, open_app

    project = create_project("pets", workspace)
    for i in range(40):
        project.add_image(f"class {i % 4}", photo_bytes(i), source="upload", original_name="x" * 200 + ".jpg")
    with sqlite3.connect(project.db_path) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = con.execute("PRAGMA page_size").fetchone()[0]
        pages = con.execute("PRAGMA page_count").fetchone()[0]
    data = bytearray(project.db_path.read_bytes())
    for page in range(1, pages):  # every page but the first (the header and the schema) garbled
        data[page * page_size + 8: (page + 1) * page_size] = os.urandom(page_size - 8)
    project.db_path.write_bytes(bytes(data))
    at = no_exceptions(open_app("pets"))
    error = " ".join(e.value for e in at.error)
    assert "cannot be opened" in error and "photos are untouched" in error
    assert "restore the automatic backup" in error
    assert at.button(key="damaged_zip") and at.button(key="restore_backup")


def test_without_a_backup_the_message_offers_the_zip_in_plain_words(tmp_path):
    message = str(storage_db.Database(tmp_path / "project.sqlite").damaged("it is empty"))
    assert "You can no" not in message
    assert message.endswith("No automatic backup exists yet; you can download the photos as a zip and import it "
                            "into a new project.")


# ---- item 7: runs that hold a project, leftovers, Markdown ------------------------------------------------------


def test_a_running_row_from_before_start_times_with_a_live_pid_does_not_wedge_the_project(cats):
    """The version before start times wrote pid alone; a live pid that is no worker must not hold the project."""
    from core.jobs import server as jobs

    run_id = cats.create_run({})
    con = sqlite3.connect(cats.db_path)
    with con:
        con.execute("UPDATE runs SET status='running', pid=?, worker_started=NULL, created=created-60 WHERE id=?",
                    (os.getpid(), run_id))  # this test process: alive, and no training worker
    con.close()
    assert jobs.active_run(cats) is None
    assert cats.run(run_id).status == "failed"
    run_id = cats.create_run({})  # the project is free again; and Stop ends such a run at once
    con = sqlite3.connect(cats.db_path)
    with con:
        con.execute("UPDATE runs SET status='running', pid=?, worker_started=NULL, created=created-60 WHERE id=?",
                    (os.getpid(), run_id))
    con.close()
    jobs.stop(cats, run_id)
    assert cats.run(run_id).status not in ("queued", "running")


def test_photo_links_left_by_a_worker_killed_mid_run_are_removed_at_the_next_look(cats):
    from core.jobs import server as jobs

    run_id = cats.create_run({})
    photo = cats.images("cats")[0]
    links = cats.run_dir(run_id) / jobs.SNAPSHOT_DIR / "cats"
    links.mkdir(parents=True)
    os.link(photo.path, links / photo.path.name)
    dead = spawn("pass")
    dead.communicate(timeout=CHILD_TIMEOUT)
    cats.update_run(run_id, status="running", pid=dead.pid)
    con = sqlite3.connect(cats.db_path)
    with con:
        con.execute("UPDATE runs SET created=created-60 WHERE id=?", (run_id,))
    con.close()
    assert jobs.active_run(cats) is None
    assert not (cats.run_dir(run_id) / jobs.SNAPSHOT_DIR).exists()
    assert photo.path.exists()
    consistent(cats)


HOSTILE_CLASS = "__bold__ [x](y) ![i](z) `c`"


@pytest.mark.parametrize("page", ["pages/review.py", "pages/train.py"])
def test_class_names_are_written_into_markdown_as_plain_text(project, page):
    from tests.apptest import no_exceptions, open_app

    project.add_image(HOSTILE_CLASS, photo_bytes(1), source="upload")
    project.add_image("cats", photo_bytes(2), source="upload")
    at = no_exceptions(open_app(project.name, page))
    shown = [str(e.value) for kind in (at.markdown, at.caption, at.warning, at.info, at.error, at.success)
             for e in kind]
    assert any("bold" in text for text in shown), "the class name is shown somewhere"
    for text in shown:
        bare = re.sub(r"\\.", "", text)  # what is left once the escaped characters are taken out
        assert "__bold__" not in bare and "](y)" not in bare and "](z)" not in bare and "`c`" not in bare, text
