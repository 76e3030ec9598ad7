"""Collect, Review and Train give the same advice on how many photos a class needs."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.store.project import Project
from tests.photos import class_photo_bytes

APP = str(Path(__file__).resolve().parents[1] / "app.py")
ADVICE = "Aim for at least 10 photos per class; 30 or more give a steadier model."


def page_text(project: Project, path: str) -> str:
    at = AppTest.from_file(APP, default_timeout=180)
    at.session_state["project"] = project.name
    at.switch_page(path)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "warning", "info") for e in at.get(kind))


@pytest.mark.parametrize("path", ["pages/collect.py", "pages/review.py", "pages/train.py"])
def test_every_page_gives_the_same_photo_advice(project, path):
    for label, (name, count) in enumerate({"plenty": 14, "thin": 6}.items()):
        for i in range(count):
            project.add_image(name, class_photo_bytes(label, i), source="upload", original_name=f"{name}{i}.jpg")
    text = page_text(project, path)
    assert ADVICE in text
    assert "20 or more" not in text
