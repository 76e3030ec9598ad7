"""Review's Suspects tab: start the check in the background, watch it, and act on the photos it ranks first."""

from __future__ import annotations

import streamlit as st

from core.jobs.api import Busy
from core.model import api as model
from core.store.api import ClassInfo, ImageRecord, Project
from pages import ui
from pages.review_shared import act, card, facts, move_photos, reject_photos, say

SUSPECT_COLUMNS = 4
SUSPECTS_PER_STEP = 12


def _find_suspects(project: Project) -> None:
    """Button callback: start checking the photos in the background (a finished check's report is dropped first)."""
    model.forget_check(project)
    try:
        model.start_check(project)
    except Busy as exc:  # another tab started one a moment ago: this page shows that one
        say("info", str(exc))
    st.session_state["review_dismissed"] = set()
    st.session_state["suspects_shown"] = SUSPECTS_PER_STEP


def _check_view(project: Project, checking: bool) -> None:
    """The check in progress (polled while it runs), or why the last one stopped."""
    task = model.current_check(project)
    view = task.view() if task else None
    if checking and not (view and view.running):
        st.rerun()  # it just ended: redraw the tab with the new ranking
    if view is None:
        return
    if view.running:
        ui.task_progress(task, view, stop_key="stop_suspects", stop="Stop checking", stopping="Stopping…",
                         stop_help="The photos looked at so far are remembered: the next check starts from there.",
                         note="You can go on reviewing or leave this page: the check goes on, and its ranking "
                              "appears here.")
    elif view.cancelled:
        st.info("Check stopped. The photos it had looked at are remembered, so the next check is quicker.", icon="⏹️")
    elif view.error:
        st.error(view.error)


def _suspect_card(project: Project, record: ImageRecord, suspect: model.Suspect) -> None:
    elsewhere = suspect.predicted_class != suspect.class_name
    with card(project, record, f"s{record.id}"):
        if elsewhere:
            verb = "looks like" if suspect.clearly_elsewhere else "might be"
            st.markdown(f"Labelled **{ui.md(suspect.class_name)}**, {verb} **{ui.md(suspect.predicted_class)}** "
                        f"({ui.percent(suspect.predicted_probability)})")
            st.caption(f"Of the {model.NEIGHBOURS} photos most like it, {suspect.neighbours_like} are in "
                       f"{ui.md(suspect.predicted_class)} and {suspect.neighbours_own} in {ui.md(suspect.class_name)}.")
        else:
            st.markdown(f"**{ui.md(suspect.class_name)}**, but unlike most of its class")
        st.progress(min(max(suspect.score, 0.0), 1.0), text=f"Suspicion {ui.percent(suspect.score)}")
        st.caption(facts(record))
        if suspect.clearly_elsewhere:
            st.button(f"Move to {suspect.predicted_class}", key=f"sus_move_{record.id}", type="primary",
                      icon=":material/drive_file_move:", width="stretch",
                      on_click=lambda: act(lambda: move_photos(project, [record.id], suspect.predicted_class)))
        elif elsewhere:
            st.caption("The check is unsure: look closely before you move it.")
            st.button(f"Move to {suspect.predicted_class}?", key=f"sus_move_{record.id}", type="tertiary",
                      icon=":material/drive_file_move:", width="stretch",
                      on_click=lambda: act(lambda: move_photos(project, [record.id], suspect.predicted_class)))
        reject, fine = st.columns(2, gap="small")
        reject.button("Reject", key=f"sus_reject_{record.id}", icon=":material/block:", width="stretch",
                      help="Off-topic or unusable: leave it out of training (you can restore it later)",
                      on_click=lambda: act(lambda: reject_photos(project, [record.id], "flagged as suspect")))
        fine.button("Fine", key=f"sus_fine_{record.id}", icon=":material/thumb_up:", width="stretch",
                    help="It belongs here: keep it and hide it from this list",
                    on_click=lambda: st.session_state["review_dismissed"].add(record.id))


def suspects_tab(project: Project, kept: list[ImageRecord], classes: list[ClassInfo]) -> None:
    st.markdown(
        "A quick classifier looks at each photo **without having seen it during its training**. Photos it "
        "thinks belong to another class, or that look unlike the rest of their class, come first. "
        "Not every suspect is wrong: check each one, reject it, move it, or mark it fine.")
    small = model.too_small({c.name: c.kept for c in classes})
    if small:
        st.caption(f"Left out (fewer than {model.MIN_PHOTOS_PER_CLASS} kept photos): {', '.join(map(ui.md, small))}.")
    state = model.remembered(project)
    fresh = state is not None and not {r.id for r in kept} - state.photo_ids
    task = model.current_check(project)
    checking = task is not None and task.running
    label, icon = ("Find suspects", ":material/search:") if state is None else ("Check again", ":material/refresh:")
    st.button(label, key="find_suspects", icon=icon, type="primary" if not fresh else "secondary",
              disabled=checking, on_click=_find_suspects, args=(project,))
    st.fragment(run_every=0.5 if checking else None)(_check_view)(project, checking)
    if state is None:
        if not checking:
            st.caption("The first check looks at every photo once (about 20–40 photos a second); later checks are "
                       "quick.")
        return
    if not fresh and not checking:
        st.info("Photos were added or restored since the last check; click **Check again** to include them.")
    by_id = {r.id: r for r in kept}
    dismissed = st.session_state.setdefault("review_dismissed", set())
    open_items = [s for s in state.items if s.image_id not in dismissed
                  and by_id.get(s.image_id) is not None and by_id[s.image_id].class_name == s.class_name]
    if not open_items:
        st.success("Nothing left to check. 🎉")
        return
    shown = st.session_state.get("suspects_shown", SUSPECTS_PER_STEP)
    st.caption(f"The {min(shown, len(open_items))} most suspicious of {ui.plural(len(open_items), 'photo')} still "
               "to check, most suspicious first.")
    for start in range(0, min(shown, len(open_items)), SUSPECT_COLUMNS):
        for column, suspect in zip(st.columns(SUSPECT_COLUMNS), open_items[start:start + SUSPECT_COLUMNS]):
            with column:
                _suspect_card(project, by_id[suspect.image_id], suspect)
    if shown < len(open_items):
        st.button("Show more", key="suspects_more",
                  on_click=lambda: st.session_state.update(suspects_shown=shown + SUSPECTS_PER_STEP))

