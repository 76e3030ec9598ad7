import io
import zipfile

import pytest

from core.intake.ingest import ImportRefused, import_files, import_folder, import_zip
from core.store.project import Project, StoreError, create_project, list_projects, open_project, validate_name
from tests.photos import photo, photo_bytes, zip_bytes


@pytest.mark.parametrize("bad", ["", "   ", "..", ".hidden", "a/b", "a\\b", "x" * 65, "con", "what?"])
def test_bad_class_names_are_refused(project, bad):
    with pytest.raises(StoreError):
        project.add_class(bad)


def test_class_names_differing_only_in_case_clash(project):
    project.add_class("Alpaca")
    with pytest.raises(StoreError, match="already exists"):
        project.add_class("alpaca")
    assert validate_name("  two   words ") == "two words"


def test_add_image_stores_file_and_metadata(project):
    result = project.add_image("alpaca", photo_bytes(1), source="web", source_url="http://x/1.jpg",
                               query="alpaca photo", original_name="1.jpg")
    assert result.status == "added" and result.path.exists()
    record = project.image(result.image_id)
    assert record.class_name == "alpaca" and record.source_url == "http://x/1.jpg"
    assert record.query == "alpaca photo" and record.status == "kept"
    assert record.path.parent == project.images_dir / "alpaca"


def test_exact_duplicates_are_not_stored_twice(project):
    first = project.add_image("a", photo_bytes(1), source="upload")
    second = project.add_image("b", photo_bytes(1), source="upload")
    assert second.status == "duplicate" and second.image_id == first.image_id
    assert len(project.images()) == 1


def test_near_duplicates_rejected_only_when_asked(project):
    project.add_image("a", photo_bytes(2, size=(400, 300)), source="web")
    smaller = photo_bytes(2, size=(200, 150))
    assert project.add_image("a", smaller, source="web", reject_near_duplicates=True).status == "near_duplicate"
    assert project.add_image("a", smaller, source="upload").status == "added"
    groups = project.duplicate_groups()
    assert len(groups) == 1 and len(groups[0]) == 2


def test_rejected_inputs_are_recorded_with_reason(project):
    result = project.add_image("a", b"<html>", source="upload", original_name="fake.jpg")
    assert result.status == "rejected" and result.reason == "not_image"
    assert project.rejected_inputs()[0]["original_name"] == "fake.jpg"
    assert project.images() == []


def test_split_is_fixed_per_photo_as_the_set_grows(project):
    ids = [project.add_image("a", photo_bytes(i), source="upload").image_id for i in range(30)]
    before = {i: project.image(i).split for i in ids}
    for i in range(30, 60):
        project.add_image("a", photo_bytes(i), source="upload")
    assert {i: project.image(i).split for i in ids} == before
    assert 0 < sum(r.split == "val" for r in project.images()) < 60


def test_reject_restore_move_delete(project):
    ids = [project.add_image("a", photo_bytes(i), source="upload").image_id for i in range(3)]
    project.reject([ids[0]], "blurry")
    assert project.image(ids[0]).status == "rejected" and project.image(ids[0]).reject_reason == "blurry"
    assert [c.kept for c in project.classes()] == [2]
    project.restore([ids[0]])
    assert project.image(ids[0]).status == "kept"
    project.move([ids[1]], "b")
    moved = project.image(ids[1])
    assert moved.class_name == "b" and moved.path.exists() and moved.path.parent.name == "b"
    path = project.image(ids[2]).path
    project.delete_images([ids[2]])
    assert not path.exists() and len(project.images()) == 2


def test_rename_and_delete_class(project):
    project.add_image("llama", photo_bytes(1), source="upload")
    project.rename_class("llama", "Llama")
    assert project.class_names() == ["Llama"] and project.images()[0].path.exists()
    with pytest.raises(StoreError):
        project.rename_class("Llama", "bad/name")
    assert project.delete_class("Llama") == 1
    assert project.class_names() == [] and not (project.images_dir / "Llama").exists()


def test_failed_file_write_leaves_no_row(project, monkeypatch):
    import core.store.journal

    def broken(path, data, temp_name=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(core.store.journal, "atomic_write", broken)
    with pytest.raises(StoreError, match="No space left"):
        project.add_image("a", photo_bytes(1), source="upload")
    assert project.images() == [] and not list(project.journal_dir.glob("*"))


def test_projects_in_workspace(workspace):
    create_project("Pets", workspace)
    with pytest.raises(StoreError):
        create_project("pets", workspace)
    assert list_projects(workspace) == ["Pets"]
    assert open_project("Pets", workspace).name == "Pets"
    with pytest.raises(StoreError):
        open_project("nope", workspace)


def test_runs_and_epochs(project):
    run_id = project.create_run({"backbone": "efficientnet_lite0"})
    project.update_run(run_id, status="running", progress={"stage": "head"})
    project.add_epoch(run_id, "head", 1, {"loss": 0.5, "val_accuracy": 0.9})
    project.request_stop(run_id)
    run = project.run(run_id)
    assert run.status == "running" and run.stop_requested and run.progress["stage"] == "head"
    assert project.epochs(run_id) == [{"stage": "head", "epoch": 1, "loss": 0.5, "val_accuracy": 0.9}]
    project.update_run(run_id, status="completed", summary={"val_accuracy": 0.9})
    assert project.runs()[0].finished is not None


# ---- imports -----------------------------------------------------------------------------


def make_zip(entries: dict[str, bytes]) -> io.BytesIO:
    """A zip archive as an open file, the way an upload arrives."""
    return io.BytesIO(zip_bytes(entries))


def test_import_files_counts_every_file(project):
    report = import_files(project, "cats", [("a.jpg", photo_bytes(1)), ("b.jpg", photo_bytes(1)),
                                            ("c.jpg", b""), ("d.png", photo_bytes(2, "PNG"))])
    assert (report.added, report.duplicates, len(report.rejected)) == (2, 1, 1)
    assert "2 photos added" in report.summary()


def test_import_zip_with_class_folders(project):
    archive = make_zip({"data/cats/1.jpg": photo_bytes(1), "data/dogs/2.jpg": photo_bytes(2),
                        "__MACOSX/data/cats/._1.jpg": b"junk", "data/.DS_Store": b"x"})
    report = import_zip(project, archive)
    assert report.added == 2 and report.skipped_system_files == 2
    assert project.class_names() == ["cats", "dogs"]


def test_flat_zip_needs_a_class(project):
    archive = make_zip({"1.jpg": photo_bytes(1)})
    with pytest.raises(ImportRefused, match="choose a class"):
        import_zip(project, archive)
    assert import_zip(project, make_zip({"1.jpg": photo_bytes(1)}), "cats").added == 1


@pytest.mark.parametrize("name", ["../evil.jpg", "/abs/evil.jpg", "a/../../evil.jpg"])
def test_zip_slip_is_refused_and_nothing_imported(project, name):
    archive = make_zip({"cats/ok.jpg": photo_bytes(1), name: photo_bytes(2)})
    with pytest.raises(ImportRefused, match="unsafe path"):
        import_zip(project, archive)
    assert project.images() == []


def test_zip_bomb_is_refused(project):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("cats/bomb.jpg", b"\0" * (150 * 1024**2))
    buffer.seek(0)
    with pytest.raises(ImportRefused, match="too large"):
        import_zip(project, buffer)


def test_not_a_zip(project):
    with pytest.raises(ImportRefused, match="not a readable zip"):
        import_zip(project, io.BytesIO(b"hello"))


def test_import_folder(project, tmp_path):
    for cls, seed in [("ants", 1), ("bees", 2)]:
        (tmp_path / cls).mkdir()
        photo(seed).save(tmp_path / cls / f"{seed}.jpg")
    (tmp_path / "bees" / "notes.txt").write_text("hi")
    report = import_folder(project, tmp_path)
    assert report.added == 2 and len(report.rejected) == 1


def test_image_at_finds_a_photo_by_path(project):
    result = project.add_image("a", photo_bytes(1), source="upload")
    assert project.image_at(result.path).id == result.image_id
    assert project.image_at(result.path.with_name("nope.jpg")) is None


def test_opening_removes_crash_leftovers_but_not_writes_in_progress(project):
    import os
    import time

    project.add_class("a")
    folder = project.images_dir / "a"
    old, fresh = folder / ".tmp-crashed.jpg", folder / ".tmp-writing.jpg"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    new_process()  # a crash's leftovers are found by the next process to open the project
    Project(project.meta_dir)
    assert not old.exists() and fresh.exists()


def new_process() -> None:
    """Forget, as a fresh process would, that this one already looked for leftover temp files."""
    from core.store import project as store

    store._LOOKED_FOR_LEFTOVERS.clear()


def test_a_rerun_opens_the_project_without_listing_the_class_folders(project, monkeypatch):
    """Every page rerun opens the project: the look for leftovers (a listing of every class folder) is made once per
    process, and again only after LEFTOVER_AGE; a dead process's journal is still put right on every open."""
    import os
    import time
    from pathlib import Path

    from core.store import project as store

    project.add_class("a")
    listed = []
    real_glob = Path.glob
    def glob(self, pattern, **kw):
        if ".tmp-" in pattern:  # the look for leftovers; the journal's own listing is not counted
            listed.append(pattern)
        return real_glob(self, pattern, **kw)

    monkeypatch.setattr(Path, "glob", glob)
    Project(project.meta_dir)
    Project(project.meta_dir)
    assert listed == []
    old = project.images_dir / "a" / ".tmp-crashed.jpg"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    later = time.monotonic() + store.LEFTOVER_AGE + 1
    monkeypatch.setattr(store.time, "monotonic", lambda: later)
    Project(project.meta_dir)
    assert listed and not old.exists()


def test_the_chosen_backbone_is_remembered_per_project(project, workspace):
    assert project.backbone is None
    project.set_backbone("efficientnet_lite1")
    assert open_project(project.name, workspace).backbone == "efficientnet_lite1"
