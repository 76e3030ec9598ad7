"""Class names from folders and the CLI follow the app's rules; invisible characters make no new name (issue 19,
item 6)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.serving.evaluate import image_folder
from core.jobs.pipeline import data_from_folders
from core.store.project import StoreError, create_project, open_project, validate_name
from core.store import db as storage_db
from tests.photos import photo_bytes


def tree(root: Path, names: list[str], per_class: int = 2) -> Path:
    for n, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            (root / name / f"{i}.jpg").write_bytes(photo_bytes(10 * n + i))
    return root


def test_folders_named_with_a_newline_or_tab_give_one_label_each(tmp_path):
    """`ants\\nbees` once wrote two lines into labels.txt for one output: every label after it was shifted."""
    data = data_from_folders(tree(tmp_path / "data", ["ants\nbees", "wasps\tand hornets", "flies"]))
    assert data.class_names == ["ants bees", "flies", "wasps and hornets"]
    assert all(validate_name(name) == name for name in data.class_names)
    assert "\n".join(data.class_names).count("\n") == len(data.class_names) - 1


def test_a_folder_that_can_never_be_a_class_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match="'aux' .* cannot be a class"):
        data_from_folders(tree(tmp_path / "data", ["aux", "cats"]))


def test_two_folders_that_are_one_name_are_refused(tmp_path):
    with pytest.raises(ValueError, match="one class name"):
        data_from_folders(tree(tmp_path / "data", ["cats", "Cats"]))


def test_evaluation_matches_folders_to_labels_as_the_app_compares_names(tmp_path):
    folder = tree(tmp_path / "test", ["Ants", "be\u200bes", "cafe\u0301"])
    paths, labels, names = image_folder(folder, ["ants", "bees", "café"])
    assert names == ["ants", "bees", "café"]
    assert sorted(set(labels)) == [0, 1, 2] and all(p.parent.name.lower().startswith(("ants", "be", "caf"))
                                                     for p in paths)


def test_invisible_characters_make_no_new_name(project):
    project.add_class("ab")
    for twin in ("a\u200bb", "a\u200eb", "\u2066ab\u2069", "a\u00adb"):
        with pytest.raises(StoreError, match="already exists"):
            project.add_class(twin)
    assert project.add_class("👩\u200d💻") == "👩\u200d💻"  # a joiner inside an emoji is part of it
    assert project.add_class("می\u200cخواهم") == "می\u200cخواهم"  # and in Persian, where it joins letters


def test_a_right_to_left_override_is_refused_with_a_clear_message(project):
    with pytest.raises(StoreError, match="direction override") as caught:
        project.add_class("cat\u202egpj.exe")
    assert "<U+202E>" in str(caught.value)


def test_a_project_holding_two_such_names_opens_with_both_kept_and_the_clash_explained(workspace):
    from tests.apptest import no_exceptions, open_app

    project = create_project("old", workspace)
    project.add_image("ab", photo_bytes(1), source="upload")
    # as the version before these rules wrote it: a second class whose name differs only by a zero-width space
    (project.images_dir / "a\u200bb").mkdir()
    (project.images_dir / "a\u200bb" / "x_00000000.jpg").write_bytes(photo_bytes(2))
    con = sqlite3.connect(project.db_path)
    with con:
        con.execute("INSERT INTO classes (name, name_key, created) VALUES ('a\u200bb', 'a\u200bb', 0)")
        con.execute("PRAGMA user_version=1")
    con.close()
    reopened = open_project("old", workspace)
    assert reopened.take_in_stray_files() == 1
    assert reopened.class_names() == ["ab", "a\u200bb"] and reopened.name_clashes() == [["ab", "a\u200bb"]]
    assert len(reopened.images("ab")) == 1 and len(reopened.images("a\u200bb")) == 1  # each reachable by its name
    assert storage_db.SCHEMA_VERSION >= 2
    reopened.rename_class("a\u200bb", "abc")  # the way out: renaming one of them
    assert reopened.name_clashes() == []
    reopened.rename_class("abc", "a\u200bb2")
    con = sqlite3.connect(project.db_path)
    with con:
        con.execute("UPDATE classes SET name='a\u200bb', name_key=? || id WHERE name='ab2'", ("ab\x00",))
    con.close()
    at = no_exceptions(open_app("old"))
    assert "look the same" in " ".join(w.value for w in at.warning) and "a<U+200B>b" in " ".join(
        w.value for w in at.warning).replace("\\", "")
