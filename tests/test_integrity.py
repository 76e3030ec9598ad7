"""Nothing lost: many writers on one project, failures half-way, crashes, odd names, damaged files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

import core.store.journal
from core.jobs import server as jobs
from core.jobs import worker
from core.jobs.pipeline import data_from_project
from core.store.project import (ClassGone, Project, ProjectDamaged, StoreError, create_project, list_projects,
                        open_project, restore_backup)
from core.store import db as storage_db
from core.store.consistency import Consistency
from tests.bing_standin import bing_standin, loopback_only, standin  # noqa: F401 (fixtures)
from tests.photos import add_class_photos, photo_bytes

ROOT = Path(__file__).resolve().parents[1]
CHILD_TIMEOUT = 600  # generous: the machine may be loaded


def consistent(project: Project) -> None:
    report = project.check()
    assert report.problems == 0, report
    assert not list(project.journal_dir.glob("*.json")), "an unfinished change was left behind"
    assert not [p for p in project.images_dir.iterdir() if p.name.startswith(".tmp-")]


def spawn(code: str, *args: str) -> subprocess.Popen:
    """A Python child process in the repository, running `code` with sys.argv[1:] = args."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def start_together(children: list[subprocess.Popen], go: Path) -> list[dict]:
    """Release children that wait for `go`, then collect the JSON each prints last."""
    deadline = time.time() + CHILD_TIMEOUT
    while len(list(go.parent.glob("ready-*"))) < len(children):
        assert time.time() < deadline and all(c.poll() is None for c in children), [c.communicate() for c in children]
        time.sleep(0.05)
    go.touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=CHILD_TIMEOUT)
        assert child.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


WAIT_FOR_GO = """
    import json, os, sys, time
    from pathlib import Path
    Path(sys.argv[2], f"ready-{os.getpid()}").touch()
    while not Path(sys.argv[2], "go").exists():
        time.sleep(0.005)
"""

# ---- many writers ---------------------------------------------------------------------------


def test_two_processes_importing_the_same_photos_store_each_once(project, tmp_path):
    code = WAIT_FOR_GO + """
    from core.store.project import Project
    from tests.photos import photo_bytes
    photos = [photo_bytes(i) for i in range(120)]
    project = Project(Path(sys.argv[1]))
    statuses, errors = {}, []
    for i, data in enumerate(photos):
        try:
            status = project.add_image("Élan", data, source="upload", original_name=f"{i}.jpg").status
            statuses[status] = statuses.get(status, 0) + 1
        except Exception as exc:
            errors.append(repr(exc))
    print(json.dumps({"statuses": statuses, "errors": errors}))
    """
    children = [spawn(code, str(project.meta_dir), str(tmp_path)) for _ in range(2)]
    results = start_together(children, tmp_path / "go")
    assert [r["errors"] for r in results] == [[], []]
    assert sum(r["statuses"].get("added", 0) for r in results) == 120
    assert sum(r["statuses"].get("duplicate", 0) for r in results) == 120
    assert project.class_names() == ["Élan"] and len(project.images()) == 120
    consistent(project)


def test_threads_creating_the_same_new_classes_at_once_share_them(project):
    errors: list[Exception] = []

    def writer(offset: int) -> None:
        mine = Project(project.meta_dir)  # each writer its own object, as pages and jobs have
        for i in range(40):
            try:
                mine.add_image(["élan", "ÉLAN", "Élan"][i % 3] + f" {i % 4}", photo_bytes(i % 60 + offset),
                               source="upload")
            except Exception as exc:  # noqa: BLE001 - any exception is the failure under test
                errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n * 20,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(project.class_names()) == 4
    assert len(project.images()) == len({i % 60 + n * 20 for n in range(3) for i in range(40)})
    consistent(project)



def test_projects_opened_and_checked_while_photos_arrive_see_no_damage_and_no_strays(project):
    """Pages open the project and check it on every rerun while a search adds photos: nothing may look wrong."""
    stop, seen = threading.Event(), []

    def adder() -> None:
        for i in range(400):
            if stop.is_set():
                return
            result = project.add_image("alpaca", photo_bytes(i, size=(64, 48)), source="web")
            if not result.path.exists():
                seen.append(f"photo {i} gone right after it was added")

    def page() -> None:
        while not stop.is_set():
            try:
                report = Project(project.meta_dir).check()
            except Exception as exc:  # noqa: BLE001 - a damage report or a crash is the failure under test
                seen.append(repr(exc))
                return
            if report.problems:
                seen.append(report.describe())

    threads = [threading.Thread(target=adder)] + [threading.Thread(target=page) for _ in range(2)]
    for t in threads:
        t.start()
    threads[0].join(timeout=120)
    stop.set()
    for t in threads[1:]:
        t.join()
    assert seen == []
    consistent(project)


def test_photos_added_while_pages_open_the_project_and_another_process_reads_it_are_all_kept(project, tmp_path):
    """Opening a project reads its file's header. Closing that file once dropped every lock this process's SQLite
    connections held on it, so another process closing its connection took itself for the last one and deleted the
    write-ahead log under them: photos added after that were lost (seen in CI: a photo file with no row)."""
    reader = spawn("""
        import sqlite3, sys
        from pathlib import Path
        while not Path(sys.argv[2], "stop").exists():  # the worker counting prepared photos
            con = sqlite3.connect(sys.argv[1], timeout=60)
            con.execute("SELECT count(*) FROM images").fetchone()
            con.close()
            Path(sys.argv[2], "reading").touch()
    """, str(project.db_path), str(tmp_path))
    deadline = time.time() + CHILD_TIMEOUT
    while not (tmp_path / "reading").exists():
        assert time.time() < deadline and reader.poll() is None, reader.communicate()
        time.sleep(0.05)
    errors, stop = [], threading.Event()

    def page() -> None:
        while not stop.is_set():
            Project(project.meta_dir)

    pages = [threading.Thread(target=page) for _ in range(2)]
    for thread in pages:
        thread.start()
    try:
        for i in range(150):
            try:
                project.add_image("alpaca", photo_bytes(i, size=(64, 48)), source="web")
            except Exception as exc:  # noqa: BLE001 - a disk I/O error is the failure under test
                errors.append(repr(exc))
    finally:
        stop.set()
        (tmp_path / "stop").touch()
        for thread in pages:
            thread.join()
        reader.communicate(timeout=CHILD_TIMEOUT)
    assert errors == []
    count = "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM images').fetchone()[0])"
    assert spawn(count, str(project.db_path)).communicate(timeout=CHILD_TIMEOUT)[0].strip() == "150"
    consistent(project)


# ---- file steps that fail half-way -----------------------------------------------------------


@pytest.fixture
def two_classes(project):
    for i in range(3):
        project.add_image("cats", photo_bytes(i), source="upload", original_name=f"cat{i}.jpg")
        project.add_image("dogs", photo_bytes(10 + i), source="upload", original_name=f"dog{i}.jpg")
    return project


def fail_on_call(monkeypatch, n: int) -> None:
    """Make the n-th file rename of the store fail, as a full disk or a locked folder would."""
    real, calls = os.replace, Counter()

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(core.store.journal.os, "replace", replace)


def snapshot(project: Project) -> tuple:
    return sorted((r.class_name, r.path.name) for r in project.images()), sorted(
        p.relative_to(project.images_dir).as_posix() for p in project.images_dir.rglob("*") if p.is_file())


def test_a_rename_onto_a_name_too_long_for_the_disk_is_refused_with_photos_in_place(two_classes):
    before = snapshot(two_classes)
    with pytest.raises(StoreError, match="bytes"):
        two_classes.rename_class("cats", "🐱" * 64)  # 64 characters, 256 bytes
    assert snapshot(two_classes) == before
    consistent(two_classes)


def test_a_rename_onto_a_stray_folder_is_refused_with_photos_in_place(two_classes):
    stray = two_classes.images_dir / "kittens"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    before = snapshot(two_classes)
    with pytest.raises(StoreError, match="already a folder named 'kittens'"):
        two_classes.rename_class("cats", "kittens")
    assert snapshot(two_classes) == before and two_classes.class_names() == ["cats", "dogs"]
    assert (stray / "notes.txt").read_text() == "mine"


def test_a_rename_whose_second_step_fails_puts_the_folder_back(two_classes, monkeypatch):
    before = snapshot(two_classes)
    fail_on_call(monkeypatch, 2)  # the first step is done: the folder sits under its temporary name
    with pytest.raises(StoreError, match="Input/output error"):
        two_classes.rename_class("cats", "kittens")
    assert snapshot(two_classes) == before and two_classes.class_names() == ["cats", "dogs"]
    consistent(two_classes)
    assert all(r.path.exists() for r in two_classes.images("cats"))


def test_a_move_failing_half_way_leaves_rows_and_files_together(two_classes, monkeypatch):
    before = snapshot(two_classes)
    fail_on_call(monkeypatch, 2)
    with pytest.raises(StoreError, match="Nothing was changed"):
        two_classes.move([r.id for r in two_classes.images("cats")], "dogs")
    assert snapshot(two_classes) == before
    consistent(two_classes)


def test_a_delete_class_that_fails_keeps_class_rows_and_folder(two_classes, monkeypatch):
    fail_on_call(monkeypatch, 1)
    with pytest.raises(StoreError):
        two_classes.delete_class("cats")
    assert len(two_classes.images("cats")) == 3
    consistent(two_classes)
    monkeypatch.undo()
    assert two_classes.delete_class("cats") == 3
    assert not (two_classes.images_dir / "cats").exists() and two_classes.class_names() == ["dogs"]
    consistent(two_classes)


CRASH = """
    import os, sys
    from pathlib import Path
    import core.store.journal as journal
    from core.store.project import Project
    where = sys.argv[2]
    if where == "after_files":  # the files moved, the rows not yet committed
        real = journal.Journal.{method}
        def crash(self, *args):
            real(self, *args)
            os._exit(3)
        setattr(journal.Journal, "{method}", crash)
    else:  # committed, but the trash and journal not yet cleared
        journal.Journal.finish = lambda self: os._exit(3)
    project = Project(Path(sys.argv[1]))
    {action}
"""


@pytest.mark.parametrize("where", ["after_files", "after_commit"])
@pytest.mark.parametrize("action,method", [
    ("project.move([r.id for r in project.images('cats')], 'dogs')", "move_files"),
    ("project.rename_class('cats', 'kittens')", "rename_folder"),
    ("project.delete_class('cats')", "trash"),
    ("project.delete_images([r.id for r in project.images('dogs')])", "trash"),
])
def test_a_crash_half_way_is_put_right_at_the_next_open(two_classes, where, action, method):
    child = spawn(CRASH.replace("{method}", method).replace("{action}", action), str(two_classes.meta_dir), where)
    _, err = child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == 3, err
    assert list(two_classes.journal_dir.glob("*.json")), "the crash left its journal"
    reopened = Project(two_classes.meta_dir)
    assert reopened.repaired == 1
    consistent(reopened)
    if where == "after_files":  # nothing committed: all as before
        assert reopened.class_names() == ["cats", "dogs"] and len(reopened.images()) == 6


KILLED_WHILE_RECORDING = """
    import os, sys
    from pathlib import Path
    import core.files
    from core.store.project import Project
    replace, records = os.replace, []
    def replace_or_die(src, dst):
        if Path(dst).parent.name == ".journal":
            records.append(dst)
            if len(records) == 2:  # the delete's record written, not yet in place
                os._exit(3)
        replace(src, dst)
    core.files.os.replace = replace_or_die
    project = Project(Path(sys.argv[1]))
    project.rename_class('cats', 'kittens')
    project.delete_images([r.id for r in project.images('dogs')])
"""


def test_a_journal_record_killed_while_written_is_cleared_at_the_next_open(two_classes):
    child = spawn(KILLED_WHILE_RECORDING, str(two_classes.meta_dir))
    _, err = child.communicate(timeout=CHILD_TIMEOUT)
    assert child.returncode == 3, err
    assert [p.name for p in two_classes.journal_dir.iterdir() if p.name.startswith(".tmp-")], "no record was cut"
    reopened = Project(two_classes.meta_dir)
    assert not list(reopened.journal_dir.iterdir()), "the cut record is cleared, not left for an hour"
    consistent(reopened)
    assert reopened.class_names() == ["dogs", "kittens"] and len(reopened.images()) == 6


def test_a_rename_during_a_web_search_does_not_bring_the_old_class_back(project):
    first = project.add_image("llama", photo_bytes(1), source="web")
    project.rename_class("llama", "alpaca")
    later = project.add_image("llama", photo_bytes(2), source="web", class_id=first.class_id)
    assert project.class_names() == ["alpaca"] and later.path.parent.name == "alpaca"
    project.delete_class("alpaca")
    with pytest.raises(ClassGone):
        project.add_image("llama", photo_bytes(3), source="web", class_id=first.class_id)
    assert project.class_names() == []


# ---- names -----------------------------------------------------------------------------------


def test_names_too_long_in_bytes_are_refused_everywhere(project, workspace):
    emoji = "🦙" * 64
    for attempt in (lambda: project.add_class(emoji),
                    lambda: project.add_image(emoji, photo_bytes(1), source="upload"),
                    lambda: create_project(emoji, workspace)):
        with pytest.raises(StoreError, match="bytes"):
            attempt()
    assert project.class_names() == [] and list_projects(workspace) == ["test project"]


def test_composed_and_decomposed_names_are_one_class(project):
    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert composed != decomposed
    project.add_image(composed, photo_bytes(1), source="upload")
    project.add_image(decomposed, photo_bytes(2), source="upload")
    assert project.class_names() == [composed] and len(project.images(decomposed)) == 2


def test_case_is_ignored_for_all_of_unicode(project, workspace):
    project.add_class("Élan")
    with pytest.raises(StoreError, match="already exists"):
        project.add_class("élan")
    project.add_class("Straße")
    with pytest.raises(StoreError, match="already exists"):
        project.rename_class("Élan", "STRASSE")
    create_project("Ünïcode", workspace)
    with pytest.raises(StoreError, match="already exists"):
        create_project("üNÏCODE", workspace)


@pytest.mark.parametrize("name", ["CON", "nul.txt", "com1", "LPT9.jpg", "com¹", "conin$", "trailing dot."])
def test_windows_reserved_names_are_refused(project, name):
    with pytest.raises(StoreError):
        project.add_class(name)


# ---- runs --------------------------------------------------------------------------------------


START_RUN = WAIT_FOR_GO + """
    from core.jobs import server as jobs
    from core.store.project import Project
    from core.model.train import TrainConfig

    # Stands for the warm worker: this process, alive until the test ends, takes the run and does nothing with it.
    jobs.WORKER.submit = lambda task, project, **fields: os.getpid()
    try:
        print(json.dumps({"run": jobs.start_training(Project(Path(sys.argv[1])), TrainConfig())}))
    except jobs.JobRefused as exc:
        print(json.dumps({"refused": str(exc)}))
"""


def test_two_processes_starting_a_run_at_once_start_one(two_classes, tmp_path):
    children = [spawn(START_RUN, str(two_classes.meta_dir), str(tmp_path)) for _ in range(2)]
    results = start_together(children, tmp_path / "go")
    started = [r for r in results if "run" in r]
    assert len(started) == 1 and len(results) - len(started) == 1
    assert "still training" in next(r["refused"] for r in results if "refused" in r)
    assert [r.id for r in two_classes.runs() if r.status in jobs.ACTIVE] == [started[0]["run"]]


def test_a_dead_run_whose_pid_was_reused_does_not_hold_the_project(two_classes):
    run_id = two_classes.create_run({})
    two_classes.update_run(run_id, status="running", pid=os.getpid())  # a live pid: this test's process
    with two_classes.db.write() as con:  # ...but recorded as started earlier: another process had that pid
        con.execute("UPDATE runs SET worker_started=worker_started-1000, created=created-60 WHERE id=?", (run_id,))
    assert jobs.active_run(two_classes) is None
    assert two_classes.run(run_id).status == "failed"
    assert two_classes.create_run({}) == run_id + 1  # the project is free again


def test_the_database_admits_one_active_run(project):
    project.create_run({})
    with pytest.raises(StoreError, match="still training"):
        project.create_run({})


# ---- damaged and older project files -------------------------------------------------------------


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "garbage"])
def test_a_damaged_database_is_reported_not_rewritten_and_others_keep_working(workspace, damage):
    broken = create_project("broken", workspace)
    broken.add_image("cats", photo_bytes(1), source="upload")
    other = create_project("other", workspace)
    db = broken.db_path
    with sqlite3.connect(db) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = db.read_bytes()
    db.write_bytes({"zeroed": b"", "truncated": data[: len(data) // 2], "garbage": b"\x00" * len(data)}[damage])
    damaged = db.read_bytes()
    with pytest.raises(ProjectDamaged, match="cannot be read") as caught:
        open_project("broken", workspace)
    assert "photos are untouched" in str(caught.value)
    assert db.read_bytes() == damaged, "opening must not rewrite a damaged file"
    assert list_projects(workspace) == ["broken", "other"]
    other.add_image("dogs", photo_bytes(2), source="upload")
    assert len(open_project("other", workspace).images()) == 1


def test_the_automatic_backup_restores_and_takes_back_later_photos(workspace, monkeypatch):
    project = create_project("pets", workspace)
    project.add_image("cats", photo_bytes(1), source="upload")
    monkeypatch.setattr(storage_db, "BACKUP_INTERVAL", 0)
    assert project.db.backup_if_due()
    project.add_image("cats", photo_bytes(2), source="upload")  # after the backup
    project.db_path.write_bytes(b"")
    with pytest.raises(ProjectDamaged, match="restore the automatic backup"):
        open_project("pets", workspace)
    restored = restore_backup("pets", workspace)
    assert len(restored.images("cats")) == 2
    consistent(restored)
    assert list((project.meta_dir / "backup").glob("damaged-*/project.sqlite"))


def test_a_project_from_the_first_release_opens_and_is_upgraded(workspace):
    folder = workspace / "old"
    (folder / "images" / "Élan").mkdir(parents=True)
    (folder / "images" / "élan").mkdir()
    with sqlite3.connect(folder / "project.sqlite") as con:
        for statement in storage_db.TABLES:
            con.execute(statement)
        con.execute("INSERT INTO meta VALUES ('name', 'old')")
        con.executemany("INSERT INTO classes (name, created) VALUES (?, 0)", [("Élan",), ("élan",), ("cats",)])
        con.executemany("INSERT INTO runs (created, status, config) VALUES (0, ?, '{}')", [("running",), ("queued",)])
    project = open_project("old", workspace)
    assert project.class_names() == ["cats", "Élan", "élan"]  # an older version's pair stays two classes
    assert [r.status for r in project.runs()] == ["queued", "failed"]
    with pytest.raises(StoreError, match="already exists"):
        project.add_class("CATS")
    project.add_image("Élan", photo_bytes(1), source="upload")
    assert len(project.images()) == 1


# ---- training ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_photo_deleted_and_one_moved_during_fine_tuning_leave_a_finished_run(project, monkeypatch):
    add_class_photos(project, {"stripes": 12, "blobs": 12})
    from core.model.train import STAGE_FINETUNE, TrainConfig

    real = worker.StoreListener.on_stage

    def meddle(self, stage, info):
        if stage == STAGE_FINETUNE:
            photos = project.images("stripes")
            project.delete_images([photos[0].id])
            project.move([photos[1].id], "blobs")
        real(self, stage, info)

    monkeypatch.setattr(worker.StoreListener, "on_stage", meddle)
    run_id = project.create_run(TrainConfig(finetune_epochs=1, unfreeze_blocks=1).to_dict())
    worker.run_job(project, run_id)
    run = project.run(run_id)
    assert run.status == "completed", run.error
    assert run.summary["images_used"] == 24
    assert not (run.dir / jobs.SNAPSHOT_DIR).exists()
    consistent(project)


def test_the_page_explains_a_damaged_project_and_restores_its_backup(workspace, monkeypatch):
    from tests.apptest import no_exceptions, open_app

    project = create_project("pets", workspace)
    project.add_image("cats", photo_bytes(1), source="upload")
    create_project("other", workspace)
    monkeypatch.setattr(storage_db, "BACKUP_INTERVAL", 0)
    project.db.backup_if_due()
    project.db_path.write_bytes(b"")
    at = no_exceptions(open_app("pets"))
    error = " ".join(e.value for e in at.error)
    assert "cannot be opened" in error and "empty" in error and "photos are untouched" in error
    assert at.sidebar.selectbox[0].value == "pets", "a damaged project must not be swapped for another"
    at.button(key="damaged_zip").click().run()
    assert (project.meta_dir / "exports" / "photos-from-damaged-project.zip").exists()
    at.button(key="restore_backup").click().run()
    assert not at.exception and not at.error
    assert len(open_project("pets", workspace).images()) == 1


def test_files_removed_or_added_by_hand_are_reported_and_put_right(two_classes):
    cats = two_classes.images("cats")
    cats[0].path.unlink()
    stray = two_classes.images_dir / "dogs" / "from-a-friend.jpg"
    stray.write_bytes(photo_bytes(99))
    report = two_classes.check()
    assert report.missing_files == [(cats[0].id, cats[0].path)] and report.files_without_rows == [stray]
    assert report.describe() == ("1 photo is listed but its file is gone; "
                                 "1 file in the class folders is not in the project")
    assert two_classes.take_in_stray_files() == 1 and two_classes.forget_missing_files() == 1
    consistent(two_classes)
    assert len(two_classes.images("dogs")) == 4 and not stray.exists()


def test_a_stray_that_became_a_photo_before_it_was_taken_in_is_kept(two_classes, monkeypatch):
    """A check can list a file whose row arrives a moment later; taking it in must not delete the photo."""
    photo = two_classes.images("cats")[0]
    monkeypatch.setattr(two_classes, "check", lambda: Consistency(files_without_rows=[photo.path]))
    assert two_classes.take_in_stray_files() == 0
    monkeypatch.undo()
    assert photo.path.exists()
    consistent(two_classes)

def test_training_data_read_while_a_class_is_renamed_is_one_consistent_picture(two_classes, monkeypatch):
    """The soak found a run failing with KeyError: classes read before a rename, photos after it."""
    real_images, renamed = two_classes.images, []

    def renamed_meanwhile(*args, **kwargs):
        if not renamed:
            renamed.append(two_classes.rename_class("cats", "kittens"))
        return real_images(*args, **kwargs)

    monkeypatch.setattr(two_classes, "images", renamed_meanwhile)
    data = data_from_project(two_classes)
    assert data.class_names == ["dogs", "kittens"]
    assert len(data.train) + len(data.val) == len(real_images(status="kept"))

def test_a_class_renamed_while_its_web_search_runs_keeps_all_its_photos(project, standin):  # noqa: F811
    from core.intake.collect import CollectRequest, collect
    from tests.test_collect import downloader

    standin.results["llama"] = [standin.photo_url(i) for i in range(1, 9)]

    def rename_after_first(event):
        if event.kind == "image_saved" and event.saved == 1:
            project.rename_class("llama", "alpaca")

    with downloader(standin) as pool:
        report = collect(project, CollectRequest(["llama"], per_class=6), on_event=rename_after_first,
                         downloader=pool)
    assert report.classes[0].saved == 6
    assert project.class_names() == ["alpaca"] and len(project.images("alpaca")) == 6
    consistent(project)


def test_the_start_page_reports_files_out_of_step_and_fixes_them(two_classes):
    from tests.apptest import no_exceptions, open_app

    two_classes.images("cats")[0].path.unlink()
    (two_classes.images_dir / "dogs" / "from-a-friend.jpg").write_bytes(photo_bytes(99))
    at = no_exceptions(open_app(two_classes.name))
    assert "out of step" in at.warning[0].value and "file is gone" in at.warning[0].value
    at.button(key="take_in_strays").click().run()
    at.button(key="forget_missing").click().run()
    assert not at.exception and not at.warning
    consistent(two_classes)


def test_zip_folder_names_follow_the_same_rules(project):
    import io

    from core.intake.ingest import import_zip
    from tests.photos import zip_bytes

    with pytest.raises(StoreError, match="bytes"):
        import_zip(project, io.BytesIO(zip_bytes({f"{'🦙' * 64}/1.jpg": photo_bytes(1)})))
    assert project.images() == []
    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "Café")
    import_zip(project, io.BytesIO(zip_bytes({f"{nfd}/1.jpg": photo_bytes(1), f"{nfc}/2.jpg": photo_bytes(2)})))
    assert project.class_names() == ["café"] and len(project.images()) == 2
