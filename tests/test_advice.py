"""Collect, Review and Train give the same advice on how many photos a class needs."""

from __future__ import annotations


import pytest

from core.store.project import Project
from tests.apptest import no_exceptions, open_app
from tests.photos import add_class_photos

ADVICE = "Aim for at least 10 photos per class; 30 or more give a steadier model."


def page_text(project: Project, path: str) -> str:
    at = no_exceptions(open_app(project.name, path))
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "warning", "info") for e in at.get(kind))


@pytest.mark.parametrize("path", ["pages/collect.py", "pages/review.py", "pages/train.py"])
def test_every_page_gives_the_same_photo_advice(project, path):
    add_class_photos(project, {"plenty": 14, "thin": 6})
    text = page_text(project, path)
    assert ADVICE in text
    assert "20 or more" not in text
