"""Collect page: type class names and get photos from the web, or add your own files, a zip or webcam shots.

A web search runs in a background thread (`core.jobs.collect`), so the page stays live and a
browser refresh finds the run again; a fragment redraws its progress twice a second. Uploads go
through `core.intake.ingest`, with the same checks and duplicate detection as downloads.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import pandas as pd
import streamlit as st

from core.jobs import api as jobs
from core.intake.api import CollectReport, CollectRequest, ImportReport, Progress, import_files, import_zip
from core.store.api import Project, StoreError, validate_name
from pages import ui
from pages import webcam as webcam_live

IMAGE_TYPES = {"Photos": "photo", "Clip art": "clipart", "Line drawings": "linedrawing", "Any kind": "any"}
NEW_CLASS = "➕ New class…"
WEBCAM_MODES = ["Record continuously", "One photo at a time"]
UPLOAD_ANCHOR = "add-your-own-photos"
MAX_FILES_PER_UPLOAD = 1000  # picked files travel in the browser session's memory; more belong in a zip
SHOWN_REJECTIONS = 50  # files listed by name after an import; the rest are counted
# Square tiles for the newest photos, so portrait and landscape shots line up in a tidy grid.
RECENT_CSS = """<style>
.st-key-collect_recent [data-testid="stImage"] img { aspect-ratio: 1 / 1; object-fit: cover; border-radius: 6px; }
</style>"""
REASON_WORDS = {
    "not_image": "not a picture", "too_small": "too small", "too_large": "too large", "truncated": "broken file",
    "empty": "empty file", "timeout": "too slow", "too_big": "file too big", "dns": "site not found",
    "connection": "site not reachable", "tls": "secure connection failed", "blocked_address": "blocked address",
    "redirect_loop": "redirect loop", "too_many_redirects": "too many redirects", "not_http": "not a web link",
    "bad_url": "bad link", "search_unavailable": "search stopped answering", "error": "unexpected error",
}


# ---- what the project has -------------------------------------------------------------------


def overview(project: Project, live: bool) -> None:
    """The classes as coloured badges with their photo counts; redrawn every second while a search runs."""
    st.fragment(_overview, run_every=1.0 if live else None)(project)


def _overview(project: Project) -> None:
    classes = project.classes()
    with st.container(border=True):
        if not classes:
            st.markdown("**Your classes:** none yet. A *class* is one kind of thing the model should recognise, "
                        "for example *alpaca* and *llama*. You need at least two.")
            return
        badges = " ".join(f":{'green' if c.kept >= ui.GOOD_PHOTOS_PER_CLASS else 'orange'}-badge[{_badge_text(c.name)} · {c.kept}]"
                          for c in classes)
        total = sum(c.kept for c in classes)
        st.markdown(f"**Your classes** ({ui.plural(len(classes), 'class')}, "
                    f"{ui.plural(total, 'photo')}): {badges}")
        hint = f"{ui.photo_advice()} Green: {ui.GOOD_PHOTOS_PER_CLASS} or more."
        if len(classes) < 2:
            hint = "Add at least one more class: a model needs two or more to choose between. " + hint
        left, right = st.columns([3, 1], vertical_alignment="center")
        left.caption(hint)
        if total:
            right.page_link(ui.PAGES["review"], label="Next: review the photos", icon="🧹")


def _badge_text(name: str) -> str:
    """A class name that can sit inside a Markdown badge."""
    return name.replace("[", "(").replace("]", ")")


# ---- web search -----------------------------------------------------------------------------


def search_section(project: Project, job: jobs.CollectJob | None) -> None:
    st.subheader("🔎 Search the web")
    busy = job is not None and job.running
    if busy and not st.session_state.get("collect_names"):  # a refresh during the search: show what it searches
        st.session_state["collect_names"] = "\n".join(job.request.class_names)
    request = search_form(busy)
    if request is not None:
        try:
            jobs.start_collecting(project, request)
        except jobs.CollectBusy as exc:
            st.warning(ui.md(exc))
        else:
            st.rerun()
    if busy:
        live_progress(project)
    elif job is not None:
        run_result(project, job.view())


def search_form(busy: bool) -> CollectRequest | None:
    """The search settings; a request once Start is pressed with valid class names."""
    with st.form("collect_search", enter_to_submit=False):  # Ctrl+Enter in the names must not start a search
        names_column, options_column = st.columns([3, 2], gap="large")
        names = names_column.text_area(
            "Class names, one per line", key="collect_names", height=160, placeholder="alpaca\nllama",
            help="Each line becomes a class and a web search. Use the words you would type into an image search.")
        per_class = options_column.slider(
            "Photos per class", 5, 200, 50, step=5, key="collect_per_class",
            help="New photos to look for in each class. Broken links and copies are skipped, "
                 "so the search keeps going until it has this many or runs out of results.")
        kind = options_column.selectbox("Kind of picture", list(IMAGE_TYPES), key="collect_image_type",
                                        help="Photos usually train the best model; clip art and drawings "
                                             "suit a model meant for those.")
        safe = options_column.toggle("Safe search", value=True, key="collect_safe_search",
                                     help="Keep adult content out of the results.")
        extra = options_column.text_input(
            "Extra search words (optional)", key="collect_extra_words", placeholder="photo",
            help="Added to every search: with 'photo', the class *alpaca* searches for “alpaca photo”.")
        started = st.form_submit_button("Start searching", type="primary", icon=":material/travel_explore:",
                                        disabled=busy, key="collect_start")
    if busy:
        st.caption("A search is running: wait for it to finish or cancel it to start another.")
    if not started:
        return None
    parsed = jobs.parse_class_names(names)
    if parsed.problems:
        st.error("Please fix the class names before searching:\n\n" + "\n".join(f"- {ui.md(p)}" for p in parsed.problems))
        return None
    return CollectRequest(parsed.names, per_class=per_class, image_type=IMAGE_TYPES[kind],
                          safe_search=safe, extra_words=extra.strip())


@st.fragment(run_every=0.5)
def live_progress(project: Project) -> None:
    """Progress per class and the newest photos, redrawn while the search runs."""
    job = jobs.current_collection(project)
    if job is None or not job.running:
        st.rerun()  # finished: redraw the whole page, with the report and the new counts
    view = job.view()
    with st.container(border=True):
        head, button = st.columns([4, 1], vertical_alignment="center")
        head.markdown(f"**Searching the web…** {ui.plural(view.saved, 'new photo')} so far · {view.elapsed:.0f} s")
        button.button("Cancel", key="collect_cancel", icon=":material/stop_circle:", on_click=job.cancel,
                      disabled=view.cancelling, width="stretch")
        if view.cancelling:
            st.caption("Stopping… photos already saved stay; half-downloaded ones are dropped.")
        bars, photos = st.columns(2, gap="large")
        photos = photos.container(key="collect_recent")
        for c in view.classes:
            state = {"waiting": "waiting", "running": "searching", "done": "done ✓"}[c.state]
            skipped = f" · {ui.plural(c.failed, 'link')} skipped" if c.failed else ""
            bars.progress(min(c.saved / c.wanted, 1.0),
                          text=f"**{ui.md(c.name)}** · {c.saved} of {c.wanted} · {state}{skipped}")
        if view.recent:
            photos.html(RECENT_CSS)
            photos.caption("Newest photos")
            photos.image([p.thumbnail for p in view.recent], caption=[p.class_name for p in view.recent], width=96)
        else:
            photos.caption("The first photos appear here as they arrive.")


def run_result(project: Project, view: jobs.JobView) -> None:
    """How the last search ended: an error, or the report per class."""
    if view.error:
        st.error(ui.md(view.error), icon=":material/wifi_off:")
        st.markdown(f"👇 [Add your own photos](#{UPLOAD_ANCHOR}) from files, a zip or your webcam instead.")
    else:
        report_summary(view.report)
        st.dataframe(report_table(view.report), hide_index=True, width="stretch")
        if view.saved:
            st.page_link(ui.PAGES["review"], label="Next: review the photos and throw out odd ones", icon="🧹")
    st.button("Dismiss" if view.error else "Clear this report", key="collect_clear", icon=":material/close:",
              on_click=jobs.forget_collection, args=(project,), type="tertiary")


def report_summary(report: CollectReport) -> None:
    saved = sum(c.saved for c in report.classes)
    if report.cancelled:
        st.warning(f"Search cancelled after {report.seconds:.0f} s. The {ui.plural(saved, 'photo')} saved before "
                   "then are kept; nothing half-downloaded was stored.", icon=":material/stop_circle:")
    else:
        st.success(f"Done: {ui.plural(saved, 'new photo')} in {report.seconds:.0f} s.", icon=":material/check_circle:")
    short = [c.class_name for c in report.classes if c.exhausted]
    if short:
        st.info(f"The web search ran out of new results for {ui.md(', '.join(short))}. Try other extra search words "
                "(for example 'photo' or 'animal'), or add your own photos below.")


def report_table(report: CollectReport) -> pd.DataFrame:
    """The report as a table in plain words: one row per class."""
    rows = report.rows()
    for row, c in zip(rows, report.classes):
        row["saved"] = f"{c.saved} of {c.requested}"
        row["reasons"] = ", ".join(f"{_reason_words(reason)} ({n})" for reason, n in c.link_failures) or "—"
    columns = {"class": "Class", "query": "Searched for", "saved": "Saved", "duplicates": "Copies skipped",
               "failed": "Failed links", "reasons": "Why they failed", "seconds": "Seconds"}
    return pd.DataFrame(rows)[list(columns)].rename(columns=columns)


def _reason_words(code: str) -> str:
    if code.startswith("http_"):
        return f"web error {code.removeprefix('http_')}"
    return REASON_WORDS.get(code, code.replace("_", " "))


# ---- your own photos ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportOutcome:
    """The last import, kept in the session so it is shown after the page redraws."""

    where: str  # "files", "zip" or "webcam": the tab that shows it
    report: ImportReport | None
    error: str | None = None


def upload_section(project: Project) -> None:
    st.subheader("🗂️ Add your own photos", anchor=UPLOAD_ANCHOR)
    st.caption("Photos from your computer or webcam get the same checks as web photos: files that are not "
               "pictures, broken files and copies of photos you already have are left out.")
    target = class_picker(project)
    files_tab, zip_tab, camera_tab = st.tabs([":material/photo_library: Photo files", ":material/folder_zip: Zip file",
                                              ":material/photo_camera: Webcam"])
    with files_tab:
        upload_files(project, target)
    with zip_tab:
        upload_zip(project, target)
    with camera_tab:
        webcam(project, target)


def class_picker(project: Project) -> str | None:
    """The class new photos go into: an existing one or a newly typed name; None until there is a valid one."""
    options = [NEW_CLASS, *project.class_names()]
    state = st.session_state
    if "collect_pick_next" in state:  # set after importing into a new class: select it now it exists
        state["upload_class"], state["upload_new_class"] = state.pop("collect_pick_next"), ""
    if state.get("upload_class") not in options:
        state["upload_class"] = options[1] if len(options) > 1 else NEW_CLASS
    pick_column, name_column = st.columns(2)
    choice = pick_column.selectbox("Add photos to class", options, key="upload_class")
    if choice != NEW_CLASS:
        return choice
    typed = name_column.text_input("New class name", key="upload_new_class", placeholder="e.g. alpaca")
    if not typed.strip():
        return None
    try:
        return validate_name(typed)
    except StoreError as exc:
        name_column.error(ui.md(exc))
        return None


def upload_files(project: Project, target: str | None) -> None:
    with st.form("upload_files_form", clear_on_submit=True, border=False):
        files = st.file_uploader("Photo files (JPEG, PNG, WebP, …): pick or drop as many as you like",
                                 accept_multiple_files=True, key="upload_files")
        added = st.form_submit_button(f"Add to {target or '…'}", type="primary", key="upload_files_add",
                                      icon=":material/add_photo_alternate:", disabled=target is None)
    if target is None:
        st.caption("Choose a class above, or type the name of a new one, first.")
    if added and not files:
        st.warning("Choose some photo files first: drag them onto the box above or click *Browse files*.")
    elif added and len(files) > MAX_FILES_PER_UPLOAD:
        st.error(f"That is {len(files):,} files; add at most {MAX_FILES_PER_UPLOAD:,} at a time. "
                 "For more, put them in a zip (one folder per class) and use the *Zip file* tab.")
    elif added:
        pairs = [(f.name, f.getvalue()) for f in files]
        _import("files", lambda progress: import_files(project, target, pairs, on_progress=progress), select=target)
    _show_outcome("files")


def upload_zip(project: Project, target: str | None) -> None:
    st.caption("Inside the zip, **one folder per class** (`alpaca/…`, `llama/…`) creates those classes. "
               "Photos at the top of the zip go into the class chosen above. Files inside that can't be read "
               "(broken, password-protected, not pictures) are left out and listed; the rest go in. A zip with "
               "unsafe paths or that would expand far beyond its size is refused whole, before anything is added.")
    with st.form("upload_zip_form", clear_on_submit=True, border=False):
        archive = st.file_uploader("Zip file", type=["zip"], key="upload_zip")
        imported = st.form_submit_button("Import zip", type="primary", key="upload_zip_add",
                                         icon=":material/unarchive:")
    if imported and archive is None:
        st.warning("Choose a zip file first.")
    elif imported:
        _import("zip", lambda progress: import_zip(project, archive, target, on_progress=progress), select=target)
    _show_outcome("zip")


def webcam(project: Project, target: str | None) -> None:
    """Webcam shots straight into a class; the camera is only asked for once the toggle is on."""
    if not st.toggle("Turn on the camera", key="webcam_on", help="Your browser asks for permission first. "
                     "Photos stay on this computer."):
        st.caption("Hold things up to your webcam: record a few frames a second, or take one photo at a time. "
                   "Every frame is added to the class chosen above.")
        return
    mode = st.segmented_control("How to take photos", WEBCAM_MODES, default=WEBCAM_MODES[0], key="webcam_mode",
                                help="Record: a few frames a second go into the class while you move the "
                                     "object around. One at a time: click for each photo.")
    if mode == WEBCAM_MODES[0]:
        webcam_live.live_recording(project, target)
        return
    if target is None:
        st.info("Choose a class above, or type the name of a new one, first.")
        return
    shots = st.session_state.setdefault("webcam_round", 0)
    shot = st.camera_input(f"Take a photo of {target}", key=f"webcam_shot_{shots}")
    taken = sum(record.source == "webcam" for record in project.images(target))
    st.caption(f"📸 {ui.plural(taken, 'webcam photo')} in **{target}**.")
    if shot is not None:
        st.session_state["webcam_round"] = shots + 1  # a fresh camera widget, ready for the next shot
        name = f"webcam-{time.strftime('%Y%m%d-%H%M%S')}.jpg"
        photo = [(name, shot.getvalue())]
        _import("webcam", lambda progress: import_files(project, target, photo, source="webcam"), select=target)
    _show_outcome("webcam")


def _import(where: str, work: Callable[[Progress], ImportReport], *, select: str | None = None) -> None:
    """Run an import with a progress bar, keep its outcome for the next redraw, and redraw.

    `select` is the class picked for the photos: once some went in, the picker shows it (it may be new)."""
    bar = st.progress(0.0, text="Adding photos…")

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 100) == 0:  # a hundred updates at most, however many files
            bar.progress(done / total, text=f"Adding photos… {done:,} of {total:,}")

    try:
        report = work(progress)
    except StoreError as exc:  # ImportRefused and bad class names: sentences for the user
        st.session_state["collect_import"] = ImportOutcome(where, None, str(exc))
    else:
        st.session_state["collect_import"] = ImportOutcome(where, report)
        if select in report.per_class:
            st.session_state["collect_pick_next"] = select
    st.rerun()


def _show_outcome(where: str) -> None:
    outcome: ImportOutcome | None = st.session_state.get("collect_import")
    if outcome is None or outcome.where != where:
        return
    if outcome.error:
        st.error(ui.md(outcome.error))
        return
    report = outcome.report
    into = ", ".join(f"{ui.md(name)} ({n})" for name, n in sorted(report.per_class.items()))
    message = report.summary() + (f" Into: {into}." if into else "")
    (st.success if report.added else st.warning)(message)
    if report.rejected:
        shown = report.rejected[:SHOWN_REJECTIONS]
        more = len(report.rejected) - len(shown)
        st.warning(f"{ui.plural(len(report.rejected), 'file')} left out:\n\n"
                   + "\n".join(f"- {ui.md(name)}: {ui.md(reason)}" for name, reason in shown)
                   + (f"\n\n…and {more:,} more." if more else ""))


# ---- the page -------------------------------------------------------------------------------

project = ui.require_project()
st.title("📷 Collect photos")
st.markdown("A model learns from examples. Give it photos of each thing it should recognise: let TransferLab "
            "search the web for them, or add photos you already have.")
job = jobs.current_collection(project)
overview(project, live=job is not None and job.running)
ui.readiness_line(project)
search_section(project, job)
st.divider()
upload_section(project)
