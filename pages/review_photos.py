"""Review's Photos tab: one class's photos a page at a time, ticked and then rejected, restored, moved or
deleted together."""

from __future__ import annotations

import streamlit as st

from core.store.api import ClassInfo, ImageRecord, Project
from pages import ui
from pages.review_shared import (GRID_COLUMNS, SOURCES, act, card, details, move_photos, page_of, reject_photos,
                                 status_line, valid_choice)

REASONS = ["off-topic", "wrong class", "poor quality", "drawing, text or logo", "duplicate"]
STATUS_FILTERS = {"kept": "Kept", "rejected": "Rejected", "all": "All"}
# Photos a page: each card costs its browser about 25-30 ms to draw on a 2-core laptop (issue 23: 40 cards were
# 2.9 s a page at 50,000 photos), so a page starts small and the user can ask for more.
PAGE_SIZES = (20, 40, 100)


def _relabel(key: str, labels: dict[str, str]) -> None:
    """Make a selectbox show its choice's new label: the browser keeps the label it was sent until told again."""
    chosen = st.session_state.get(key)
    if chosen in labels and st.session_state.get(f"{key}_label") != labels[chosen]:
        st.session_state[key] = chosen  # a value set by the script is sent to the browser with its label
    st.session_state[f"{key}_label"] = labels.get(chosen)


def _set_picks(ids: list[int], value: bool) -> None:
    for image_id in ids:
        st.session_state[f"pick_{image_id}"] = value


def _restore(project: Project, ids: list[int]) -> str:
    project.restore(ids)
    return f"Restored {ui.plural(len(ids), 'photo')}."


def _delete(project: Project, ids: list[int]) -> str:
    project.delete_images(ids)
    st.session_state.pop("confirm_delete_photos", None)
    return f"Deleted {ui.plural(len(ids), 'photo')} for good."


def _reset_page() -> None:
    st.session_state["grid_page"] = 1


def _action_bar(project: Project, class_names: list[str], shown: list[ImageRecord], current: str) -> None:
    """What to do with the ticked photos."""
    shown_ids = [r.id for r in shown]
    picked = [i for i in shown_ids if st.session_state.get(f"pick_{i}")]  # ticks on other pages or classes don't count
    with st.container(border=True):
        with st.container(horizontal=True, vertical_alignment="center"):
            st.markdown(f"**{ui.plural(len(picked), 'photo')} selected**" if picked
                        else "**Tick photos** below, then choose what to do with them.")
            st.button(f"Select all {len(shown_ids)} on this page", key="select_page", icon=":material/select_all:",
                      on_click=_set_picks, args=(shown_ids, True), disabled=not shown_ids, type="tertiary")
            st.button("Clear selection", key="clear_selection", icon=":material/deselect:", type="tertiary",
                      on_click=_set_picks, args=(picked, False), disabled=not picked)
        row = st.columns([3, 2, 2, 3, 2, 2], vertical_alignment="bottom")
        reason = row[0].selectbox("Reason for rejecting", REASONS, key="reject_reason", accept_new_options=True,
                                  help="Pick one or type your own; it is shown on the photo.")
        row[1].button("Reject", key="reject_selected", icon=":material/block:", disabled=not picked, width="stretch",
                      on_click=lambda: act(lambda: reject_photos(project, picked, reason), picked))
        row[2].button("Restore", key="restore_selected", icon=":material/undo:", disabled=not picked,
                      width="stretch", on_click=lambda: act(lambda: _restore(project, picked), picked))
        targets = [c for c in class_names if c != current] or class_names
        if st.session_state.get("move_target") == current:  # a typed new name is kept; the shown class is not a move
            st.session_state.pop("move_target")
        target = row[3].selectbox("Move to class", targets, key="move_target", accept_new_options=True,
                                  help="Pick a class, or type a new name to create that class.")
        row[4].button("Move", key="move_selected", icon=":material/drive_file_move:", width="stretch",
                      disabled=not picked or not target,
                      on_click=lambda: act(lambda: move_photos(project, picked, target), picked))
        row[5].button("Delete…", key="delete_selected", icon=":material/delete_forever:", disabled=not picked,
                      width="stretch", help="Removes the files for good. Rejecting is usually enough.",
                      on_click=lambda: st.session_state.update(confirm_delete_photos=picked))
        doomed = st.session_state.get("confirm_delete_photos")
        if doomed:
            st.warning(f"Delete {ui.plural(len(doomed), 'photo')} for good? The files are removed from disk and "
                       "cannot be restored. (Rejecting keeps them out of training without losing them.)")
            with st.container(horizontal=True):
                st.button("Yes, delete them", key="confirm_delete", type="primary", icon=":material/delete_forever:",
                          on_click=lambda: act(lambda: _delete(project, doomed), doomed))
                st.button("Cancel", key="cancel_delete",
                          on_click=lambda: st.session_state.pop("confirm_delete_photos", None))


def photos_tab(project: Project, classes: list[ClassInfo]) -> None:
    """One class's photos, a page at a time: only the page shown is read from the project."""
    class_names = [c.name for c in classes]
    counts = {c.name: c for c in classes}
    valid_choice("grid_class", class_names)
    labels = {n: f"{n}  ({counts[n].kept} kept · {counts[n].rejected} rejected)" for n in class_names}
    _relabel("grid_class", labels)
    left, middle, right = st.columns([3, 2, 2], vertical_alignment="bottom")
    # persist_state: kept while another tab is open (its widgets are not drawn then, and would reset)
    current = left.selectbox("Class", class_names, key="grid_class", on_change=_reset_page, format_func=labels.get,
                             persist_state="page")
    status = middle.segmented_control("Show", list(STATUS_FILTERS), format_func=STATUS_FILTERS.get,
                                       key="grid_status", default="kept", required=True, on_change=_reset_page,
                                       persist_state="page")
    per_page = right.segmented_control("Photos a page", PAGE_SIZES, key="grid_per_page", default=PAGE_SIZES[0],
                                       required=True, on_change=_reset_page, persist_state="page",
                                       help="More photos a page take longer to show.")
    count = {"kept": counts[current].kept, "rejected": counts[current].rejected}.get(
        status, counts[current].kept + counts[current].rejected)
    page, pages = page_of("grid_page", count, per_page)
    first = (page - 1) * per_page
    on_page = project.images(current, None if status == "all" else status, offset=first, limit=per_page)
    _action_bar(project, class_names, on_page, current)
    if not on_page:
        st.info(f"No {'' if status == 'all' else STATUS_FILTERS[status].lower() + ' '}photos in **{current}**.")
        return
    note, pager = st.columns([3, 2], vertical_alignment="center")
    note.caption(f"Photos {first + 1}–{first + len(on_page)} of {count:,}. Faded ones are rejected; point at "
                 ":material/help: for where a photo came from.")
    if pages > 1:
        pager.pagination(pages, key="grid_page")  # not in a horizontal container: it would shrink to one page
    for start in range(0, len(on_page), GRID_COLUMNS):
        for column, record in zip(st.columns(GRID_COLUMNS), on_page[start:start + GRID_COLUMNS]):
            with column, card(project, record, str(record.id)):
                st.checkbox(f"{record.width}×{record.height}", key=f"pick_{record.id}", help=details(record))
                st.caption(f"{ui.file_size(record.size_bytes)} · {SOURCES.get(record.source, record.source)}  \n"
                           f"{status_line(record)}")
