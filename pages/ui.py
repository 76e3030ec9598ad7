"""What every page shares: the current project, cached models, and 'what is missing' notes.

Pages draw and call `core`; nothing here trains or touches files itself.
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import streamlit as st


def _leave_pages_folder_mode() -> None:
    """Make the first request after a server start that asks for /collect (say) run inside app.py.

    Streamlit serves each file of a folder named `pages/` as a bare page (multipage v1) until some
    session has called `st.navigation` (documented: from then on every session ignores `pages/`). The
    product keeps that folder name, so a server's very first request, when it is for /collect, runs
    pages/collect.py bare, before app.py has run once. No public setting turns the folder mode off, and
    a page cannot call `st.navigation` itself (Streamlit allows it only in the entrypoint, and the bare
    run has already made its own), so this shim reads and clears Streamlit's flag for that mode and
    reruns: the rerun goes through app.py's navigation and lands on the page asked for. It runs once
    per server process (on this module's first import); drop it if the folder is ever renamed.
    """
    from streamlit.runtime.pages_manager import PagesManager

    # The bare run also lists every file of pages/ in the sidebar (app, charts, ... ui, webcam) until the rerun's
    # navigation replaces them: .streamlit/config.toml hides the sidebar navigation, so that list is never drawn, and
    # app.py's is shown again from here (a setting of the server: for every session from now on).
    st.set_option("client.showSidebarNavigation", True)
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


_leave_pages_folder_mode()


# Before anything can import TensorFlow: aiortc's SRTP library (the live webcam's) crashes the interpreter
# when it is loaded into a process that already holds TensorFlow. Every page and app.py import this module first.
import streamlit_webrtc  # noqa: F401, E402

from core.jobs import api as jobs  # noqa: E402
from core.jobs.api import Task, TaskView  # noqa: E402
from core.model import api as model  # noqa: E402
from core.model.api import backbone_label  # noqa: E402
from core.store.api import (ImageRecord, Project, ProjectDamaged, RunRecord, StoreError,  # noqa: E402
                            create_project, list_projects, open_project, restore_backup, visible, workspace_root)

PAGES = {
    "start": "pages/home.py",
    "collect": "pages/collect.py",
    "review": "pages/review.py",
    "train": "pages/train.py",
    "results": "pages/results.py",
    "predict": "pages/predict.py",
}




def land_unknown_paths_on_start() -> None:
    """Send an address that names no page (a typo, /start, an old bookmark) to the Start page, without Streamlit's
    'Page not found' box: the Start page is the default and lives at the root, so /start names nothing either.

    Streamlit has no public way to route an unknown address: `st.navigation` shows the box and then runs the
    default page. So, before app.py calls it, this clears the page the run was asked for (the run's private
    PagesManager.set_script_intent), which is exactly what a request for the root address carries."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    manager = ctx.pages_manager if ctx else None
    if manager and manager.intended_page_name and not manager.intended_page_script_hash \
            and manager.intended_page_name.strip("/") not in PAGES.keys() - {"start"}:
        manager.set_script_intent("", "")


# How many kept photos a class needs: below the minimum the pages warn; the recommendation is what usually
# gives a confident model. Collect, Review and Train all advise with these two and `photo_advice`.
MIN_PHOTOS_PER_CLASS = 10
GOOD_PHOTOS_PER_CLASS = 30


def photo_advice() -> str:
    """The one sentence every page uses to say how many photos a class needs."""
    return (f"Aim for at least {MIN_PHOTOS_PER_CLASS} photos per class; {GOOD_PHOTOS_PER_CLASS} or more give a "
            "steadier model.")


def plural(n: int, word: str) -> str:
    """'1 photo', '3 photos', '2 classes', '4 copies'."""
    if n == 1:
        return f"{n:,} {word}"
    if word.endswith(("s", "sh", "ch", "x")) and word != "epoch":  # a hard "ch" takes "s"
        return f"{n:,} {word}es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return f"{n:,} {word[:-1]}ies"
    return f"{n:,} {word}s"


PERCENT = ".0%"  # the one way a share is written, in text, tables and chart axes alike (Python and d3 read it the same)


def percent(share: float) -> str:
    """'98%': a share written as every page and chart writes it."""
    return format(share, PERCENT)


def percent_beside(share: float, bar: float) -> str:
    """A share written beside the bar it is compared with: one below the bar is never rounded up onto it ('59.8%',
    not a '60%' that reads as at a 60% bar); otherwise as `percent` writes it."""
    for written in (percent(share), f"{share:.1%}"):
        if not share < bar <= float(written.rstrip("%")) / 100:
            return written
    return f"{math.floor(share * 1000) / 10:.1f}%"


def duration(seconds: float) -> str:
    """'12 s', '4 min' or '2.5 h'."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def table_height(rows: int) -> int:
    """Pixels that show a table's header and `rows` rows with no scrolling inside it (Streamlit's rows are 35 px;
    left to itself a table shows about ten and hides the rest behind a scroll bar)."""
    return (rows + 1) * 35 + 3


def learned_validation(summary: dict) -> bool:
    """Whether the run's saved model learned its validation photos too, after they measured it: its head solved
    again with them, or its fine-tuned network trained again on every photo."""
    return bool(summary.get("head_refit") or summary.get("finetune_refit_epochs"))


LEARNED_VALIDATION = ("The saved model then learned these validation photos too (a new head is solved again with "
                      "them, a retrained network is trained again on every photo), which adds a point or two on new "
                      "photos. The figures here are from before, when it had not seen them.")


def retrained(blocks: int) -> str:
    """What a run trained, in a few words: 'new head only' or 'last 2 blocks + head'."""
    return "new head only" if not blocks else f"last {plural(blocks, 'block')} + head"


def run_label(run: RunRecord) -> str:
    """The one name a run goes by on every page: number, start time (known from the moment it is queued, so the
    label never changes), network, what it retrained, and its validation score once it has one."""
    started = datetime.fromtimestamp(run.created).strftime("%d %b, %H:%M")
    network = backbone_label(run.config["backbone"]) if run.config.get("backbone") else "unknown network"
    parts = [f"Run {run.id}", f"started {started}", network, retrained(run.config.get("unfreeze_blocks", 0))]
    accuracy = run.summary.get("val_accuracy")
    parts += [f"{percent(accuracy)} right"] if accuracy is not None else []  # of its validation photos: the pickers' help
    parts += ["stopped early"] if run.status == "stopped" else []
    return " · ".join(parts)


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>~$:#|])")  # enough that no link, image, tag, heading, code,
# emphasis, emoji shortcode, :color[] directive or formula can form; "(" alone starts nothing
_AUTOLINK = re.compile(r"(?i)(\\:|www)(//|\.)")  # what GitHub-flavoured markdown links by itself


def md(text: object) -> str:
    """Text from outside (file and class names, search words, web addresses) made inert in Streamlit markdown;
    line breaks become spaces."""
    escaped = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))
    return _AUTOLINK.sub("\\1\u2060\\2", escaped)  # a word joiner: shown as typed, not turned into a link


_URL_SAFE = "/:?#@!&'+,;=%~"  # everything else, brackets, parentheses and spaces included, is %-encoded


def md_link(label: str, url: str | None) -> str | None:
    """A markdown link to a web page whose address cannot break out of the link; None unless http(s)."""
    if not url or urlsplit(url).scheme.lower() not in ("http", "https"):
        return None
    return f"[{label}]({quote(url, safe=_URL_SAFE)})"


def file_size(n: int) -> str:
    """Bytes as '87 KB' or '2.4 MB'."""
    return f"{n / 1024 ** 2:.1f} MB" if n >= 1024 ** 2 else f"{max(1, round(n / 1024))} KB"


def _select(name: str) -> None:
    st.session_state["project"] = name
    st.query_params["project"] = name


def _create_project() -> None:
    """Form callback: make the project, open it, close the panel and say so on the next run."""
    try:
        project = create_project(st.session_state.get("new_project_name", ""))
    except StoreError as exc:
        st.session_state["new_project_error"] = str(exc)
        return
    _select(project.name)
    st.session_state["project_picker"] = project.name
    st.session_state["new_project_panel"] = False
    st.session_state["project_created"] = project.name


def project_sidebar() -> None:
    """Sidebar: pick a project or create one. The choice survives a refresh through the URL."""
    names = list_projects()
    wanted = st.session_state.get("project") or st.query_params.get("project")
    if wanted not in names:
        wanted = names[0] if names else None
    if wanted:
        _select(wanted)
        if st.session_state.get("project_picker") != wanted:  # the URL or a new project chose it, not the picker
            st.session_state["project_picker"] = wanted
    if created := st.session_state.pop("project_created", None):
        st.toast(f"Created the project “{md(created)}” and opened it.", icon="✅")
    with st.sidebar:
        st.markdown("### 🧪 TransferLab")
        if names:
            st.selectbox("Project", names, key="project_picker",
                         on_change=lambda: _select(st.session_state["project_picker"]))
        with st.expander("New project", expanded=not names, key="new_project_panel", on_change="rerun"):
            with st.form("new_project", clear_on_submit=True, border=False):
                st.text_input("Project name", placeholder="e.g. alpaca or llama", key="new_project_name")
                st.form_submit_button("Create project", type="primary", on_click=_create_project)
            if problem := st.session_state.pop("new_project_error", None):
                st.error(problem)
        st.caption(f"Projects are stored in `{workspace_root()}`")


def current_project() -> Project | None:
    """The project picked in the sidebar; a damaged one is explained on the page, which then stops."""
    name = st.session_state.get("project")
    if not name:
        return None
    try:
        return open_project(name)
    except ProjectDamaged as exc:
        damaged_project(name, exc)
        st.stop()
    except StoreError:
        return None


def run_page(navigation) -> None:
    """Run the chosen page; a project whose database turns out damaged past its header (a page inside garbled)
    gets the same explanation and offers as one that cannot be opened at all."""
    try:
        navigation.run()
    except ProjectDamaged as exc:
        damaged_project(st.session_state.get("project") or "", exc)


def damaged_project(name: str, problem: ProjectDamaged) -> None:
    """Say what is wrong with a project's database and offer what can be done: the backup, or the photos."""
    st.error(f"**The project “{md(name)}” cannot be opened.** {md(problem)}", icon="🩹")
    restore, photos = st.columns(2)
    if problem.backup_time is not None:
        when = time.strftime("%d %b %Y, %H:%M", time.localtime(problem.backup_time))
        if restore.button(f"Restore the backup of {when}", type="primary", key="restore_backup"):
            try:
                restore_backup(name)
            except (StoreError, OSError) as exc:
                st.error(f"The backup could not be restored: {md(exc)}")
            else:
                st.rerun()
    folder = workspace_root() / name
    archive = folder / "exports" / "photos-from-damaged-project.zip"
    if photos.button("Prepare the photos as a zip", key="damaged_zip"):
        from core.serving.api import folder_zip  # loads the model stack: only when asked

        with st.spinner("Packing the photos…"):
            folder_zip(folder / "images", archive)
    if archive.exists():
        photos.download_button(f"Download the photos ({file_size(archive.stat().st_size)})", data=archive.read_bytes,
                               file_name=f"{name}-photos.zip", mime="application/zip", key="damaged_download")
        photos.caption("A new project can import this zip on its Collect page: one folder per class.")


def out_of_step(project: Project) -> None:
    """Warn when photo rows and files disagree (a file removed by hand, a restored backup) and offer the fix."""
    for names in project.name_clashes():
        st.warning("These classes have names that look the same, made by an older version: "
                   + ", ".join(f"**{md(visible(n))}**" for n in names) + ". They are kept apart; rename one of "
                   "them on the Review page (<U+…> marks a character that shows nothing).", icon="👯")
    report = project.check()
    if report.repaired:
        st.caption(f"{plural(report.repaired, 'change')} cut short by a crash {'was' if report.repaired == 1 else 'were'} "
                   "finished or undone when the project opened.")
    if not report.problems:
        return
    st.warning(f"Photos and files are out of step: {report.describe()}.", icon="⚠️")
    if report.files_without_rows and st.button("Add the unknown files to their classes", key="take_in_strays",
                                               help="A photo moved to another class folder by hand takes that "
                                                    "class; a class folder renamed by hand renames the class. "
                                                    "Nothing is deleted: files that cannot be photos are put in "
                                                    "the project's recovered folder."):
        taken = project.take_in_stray_files()
        st.toast(f"{plural(taken, 'photo')} taken in.")
        st.rerun()
    if report.missing_files and st.button("Forget the photos whose file is gone", key="forget_missing"):
        project.forget_missing_files()
        st.rerun()


def thumbnail(project: Project, record: ImageRecord) -> None:
    """A photo's thumbnail, or a plain line where its file has gone."""
    data = project.thumbnail(record)
    if data is None:
        st.caption("🚫 This photo's file is gone or cannot be read.")
    else:
        st.image(data, width="stretch")


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
    from core.serving.api import load_predictor

    return load_predictor(Path(run_dir), keras=False)


def load_predictor(run_dir: Path):
    """The predictor for a finished run (`core.serving.predictor.Predictor`), from LiteRT files only: Keras stays out of
    this server (`core.serving.heatmap.NotConverted` while a fine-tuned run's file is being made); RunFolderInvalid when
    its folder is damaged."""
    from core.serving.api import loading, model_file

    with loading(run_dir):
        path = model_file(run_dir, keras=False)
        modified = path.stat().st_mtime
    return _predictor(str(run_dir), path.name, modified)


@st.cache_resource(max_entries=4, show_spinner=False)
def _heat_mapper(run_dir: str, files: tuple[tuple[str, float], ...]):
    """A run's heat maps (`core.serving.heatmap.HeatMapper`), loaded once per server; keyed by its files and their times."""
    from core.serving.api import load_heat_mapper

    return load_heat_mapper(Path(run_dir))


def load_heat_mapper(run_dir: Path):
    """The run's heat maps; `core.serving.heatmap.NotConverted` while the worker is still making their LiteRT files."""
    from core.serving.api import NotConverted, files_needed

    files = files_needed(run_dir)
    if not all(path.exists() for path in files):
        raise NotConverted(", ".join(path.name for path in files))
    return _heat_mapper(str(run_dir), tuple((str(path), path.stat().st_mtime) for path in files))


def await_conversion(project: Project, run: RunRecord, message: str) -> None:
    """Say what the worker is making for this run, and rerun the page once it is there."""
    st.info(message, icon="⏳")
    rerun_when_converted(project, run)


def rerun_when_converted(project: Project, run: RunRecord) -> None:
    """Ask the worker for the run's LiteRT files (heat maps, a fine-tuned run's predictions) and rerun the page
    once they are there."""
    @st.fragment(run_every=1)
    def poll() -> None:
        if jobs.heat_map_ready(project, run):
            st.rerun()

    poll()


# Seconds between counts of the photos ready to train: often while the worker catches up, seldom once all are
# ready (a count takes 0.3 s of the server's CPU at 50,000 photos: every 2 s that was a sixth of a core, on every page).
READINESS_POLL = 2
READY_POLL = 30


def readiness_line(project: Project) -> None:
    """'Ready to train: 230 of 262 photos', live while the background embedder catches up."""
    jobs.prepare(project)  # the worker embeds this project's new photos in the background
    counted = [model.readiness(project)]  # this run's count sets the pace; the line's own reruns count again

    @st.fragment(run_every=READY_POLL if counted[0].complete else READINESS_POLL)
    def line() -> None:
        ready = counted.pop() if counted else model.readiness(project)
        if not ready.total:
            return
        if ready.complete:
            st.caption(f"🧠 Ready to train: all {ready.total:,} photos are prepared, so training takes seconds.")
        else:
            st.caption(f"🧠 Ready to train: {ready.ready:,} of {ready.total:,} photos prepared (the rest are being "
                       "looked at in the background; training does them itself if you start now).")

    line()


def task_progress(task: Task, view: TaskView, *, stop_key: str, stop: str, stop_help: str, stopping: str,
                  note: str) -> None:
    """A background task while it runs: its progress bar with the time so far (a part with no steps to count keeps
    the bar still for minutes at 50,000 photos: the clock shows it is alive), a Stop button (or that it is stopping),
    and a note."""
    st.progress(view.fraction, text=f"{view.text} ({duration(view.elapsed)} so far)")
    if view.cancelling:
        st.caption(stopping)
    else:
        st.button(stop, key=stop_key, icon=":material/stop:", on_click=task.cancel, help=stop_help)
    st.caption(note)
