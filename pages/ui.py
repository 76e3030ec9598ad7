"""What every page shares: the current project, cached models, and 'what is missing' notes.

Pages draw and call `core`; nothing here trains or touches files itself.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
# Before anything can import TensorFlow: aiortc's SRTP library (the live webcam's) crashes the interpreter
# when it is loaded into a process that already holds TensorFlow. Every page and app.py import this module first.
import streamlit_webrtc  # noqa: F401, E402

from core import config
from core.predict import MODEL_FILE
from core.store import Project, StoreError, create_project, list_projects, open_project

PAGES = {
    "start": "pages/home.py",
    "collect": "pages/collect.py",
    "review": "pages/review.py",
    "train": "pages/train.py",
    "results": "pages/results.py",
    "predict": "pages/predict.py",
}


def _leave_pages_folder_mode() -> None:
    """Make the first request after a server start that asks for /collect (say) run inside app.py.

    Streamlit serves each file of a folder named `pages/` as a bare page (multipage v1) until some
    session has called `st.navigation`; the project keeps that folder name, so the first bare run
    switches the process to app.py's navigation and reruns, which lands on the page asked for.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_pages_folder_mode()


def plural(n: int, word: str) -> str:
    """'1 photo', '3 photos', '2 classes', '4 copies'."""
    if n == 1:
        return f"{n:,} {word}"
    if word.endswith(("s", "sh", "ch", "x")):
        return f"{n:,} {word}es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return f"{n:,} {word[:-1]}ies"
    return f"{n:,} {word}s"


def duration(seconds: float) -> str:
    """'12 s', '4 min' or '2.5 h'."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def file_size(n: int) -> str:
    """Bytes as '87 KB' or '2.4 MB'."""
    return f"{n / 1024 ** 2:.1f} MB" if n >= 1024 ** 2 else f"{max(1, round(n / 1024))} KB"


def _select(name: str) -> None:
    st.session_state["project"] = name
    st.query_params["project"] = name


def project_sidebar() -> None:
    """Sidebar: pick a project or create one. The choice survives a refresh through the URL."""
    names = list_projects()
    wanted = st.session_state.get("project") or st.query_params.get("project")
    if wanted not in names:
        wanted = names[0] if names else None
    if wanted:
        _select(wanted)
    with st.sidebar:
        st.markdown("### 🧪 TransferLab")
        if names:
            choice = st.selectbox("Project", names, index=names.index(wanted), key="project_picker")
            if choice != wanted:
                _select(choice)
                st.rerun()
        with st.expander("New project", expanded=not names):
            with st.form("new_project", clear_on_submit=True, border=False):
                new_name = st.text_input("Project name", placeholder="e.g. alpaca or llama")
                if st.form_submit_button("Create project", type="primary"):
                    try:
                        project = create_project(new_name)
                    except StoreError as exc:
                        st.error(str(exc))
                    else:
                        _select(project.name)
                        st.rerun()
        st.caption(f"Projects are stored in `{config.workspace_root()}`")


def current_project() -> Project | None:
    name = st.session_state.get("project")
    if not name:
        return None
    try:
        return open_project(name)
    except StoreError:
        return None


def require_project() -> Project:
    """The current project, or a friendly note (and stop) when there is none yet."""
    project = current_project()
    if project is None:
        st.info("Create a project first: give it a name in the sidebar under **New project**.")
        st.page_link(PAGES["start"], label="How TransferLab works", icon="🏠")
        st.stop()
    return project


def missing(message: str, page: str, label: str, icon: str = "➡️") -> None:
    """Say what this page needs and link to the page that provides it, then stop drawing."""
    st.info(message)
    st.page_link(PAGES[page], label=label, icon=icon)
    st.stop()


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _predictor(run_dir: str, model: str, modified: float):
    """A run's fast predictor, loaded once per server and shared by every session and webcam thread
    (keyed by the model file and its time, so a run that gains a better file reloads)."""
    from core.predictor import load_predictor

    return load_predictor(Path(run_dir))


def load_predictor(run_dir: Path):
    """The predictor for a finished run (`core.predictor.Predictor`)."""
    from core.predictor import model_file

    path = model_file(run_dir)
    return _predictor(str(run_dir), path.name, path.stat().st_mtime)


@st.cache_resource(max_entries=2, show_spinner="Loading the full model for the heat map…")
def _classifier(run_dir: str, modified: float):
    """A run's Keras model, only for Grad-CAM heat maps: loaded once, and only when one is asked for."""
    from core.predict import Classifier

    return Classifier.load(Path(run_dir))


def load_classifier(run_dir: Path):
    """The run's Keras model; FileNotFoundError while model.keras is not saved yet."""
    model_file = Path(run_dir) / MODEL_FILE
    if not model_file.exists():
        raise FileNotFoundError(MODEL_FILE)
    return _classifier(str(run_dir), model_file.stat().st_mtime)
