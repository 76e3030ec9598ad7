"""Shared fixtures: every test gets its own empty workspace, never the developer's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import pytest

# Page tests import the live webcam's aiortc; loaded after TensorFlow, its SRTP library crashes the interpreter.
import aiortc  # noqa: F401, E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory) -> Iterator[Path]:
    """One cache of converted backbones and embeddings for the whole session: converting is slow."""
    from core.jobs.server import WORKER

    path = tmp_path_factory.mktemp("cache")
    os.environ["TRANSFERLAB_CACHE"] = str(path)
    yield path
    WORKER.shutdown()  # tests leave no worker behind: it finishes what it was given, then exits


@pytest.fixture(autouse=True)
def workspace(tmp_path_factory, monkeypatch) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    monkeypatch.setenv("TRANSFERLAB_HOME", str(root))
    return root


@pytest.fixture(autouse=True)
def chromium_for_browser_tests(request) -> None:
    """Browser tests skip (fail, in CI) before any of their setup when Chromium is missing."""
    if request.node.get_closest_marker("browser"):
        from tests.browser import require_chromium

        require_chromium()


@pytest.fixture
def project(workspace):
    from core.store.project import create_project

    return create_project("test project", workspace)


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> Path:
    """Two classes of synthetic photos in train/ and val/, written once for the session: tests only read them."""
    from tests.runs import two_class_folders

    return two_class_folders(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def trained_once(folders, tmp_path_factory) -> Path:
    """The default head-only run on `folders`, trained once for the session; tests take `trained_run`, a copy."""
    from tests.runs import folder_run

    return folder_run(folders, tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def trained_run(trained_once, tmp_path_factory) -> Path:
    """A test module's own copy of the session's trained run: what one module's tests add to it (an exported
    format, a report) no other module sees."""
    return Path(shutil.copytree(trained_once, tmp_path_factory.mktemp("trained") / "run"))


def shared_dataset(name: str) -> Path:
    """A real photo set beside the checkout, or skip the test when it is absent."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"real photo set {path} not present")
    return path
