"""Review page: look through the photos, throw out the bad ones, fix labels and balance the classes.

Every change goes through `core.store.project.Project`; a rejected photo stays in the project and can be
restored. The suspect ranking (`core.model.suspects`) is kept in the project, so a refresh shows it again.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

import altair as alt
import pandas as pd
import streamlit as st

from core.model import api as model
from core.jobs.api import Busy
from core.store.api import ClassInfo, ImageRecord, Project, StoreError
from pages import ui

PAGE_SIZE = 40
GRID_COLUMNS = 5
SUSPECT_COLUMNS = 4
SUSPECTS_PER_STEP = 12
GROUPS_PER_PAGE = 8
MAX_IMBALANCE = 3
REASONS = ["off-topic", "wrong class", "poor quality", "drawing, text or logo", "duplicate"]
TABS = [":material/photo_library: Photos", ":material/search: Suspects", ":material/content_copy: Duplicates",
        ":material/balance: Classes & balance"]
STATUS_FILTERS = {"kept": "Kept", "rejected": "Rejected", "all": "All"}
SOURCES = {"web": "web search", "upload": "upload", "zip": "zip file", "folder": "folder", "webcam": "webcam"}

# Square, letter-boxed thumbnails: photos of every shape line up in a tidy grid and none is cropped.
THUMBNAIL_CSS = """<style>
[class*="st-key-card_"] [data-testid="stImage"] img {
  aspect-ratio: 1 / 1; object-fit: contain; background: rgba(128, 128, 128, 0.08); border-radius: 6px; }
[class*="st-key-card_rejected"] [data-testid="stImage"] img { opacity: 0.45; }
[class*="st-key-card_"]:has(input[type="checkbox"]:checked) { border-color: #1f77b4; box-shadow: 0 0 0 1px #1f77b4; }
</style>"""


# ---- small helpers ----------------------------------------------------------------------------


def _facts(record: ImageRecord) -> str:
    """One caption line: size, weight and origin."""
    return f"{record.width}×{record.height} · {ui.file_size(record.size_bytes)} · {SOURCES.get(record.source, record.source)}"


def _status(record: ImageRecord) -> str:
    if record.status == "rejected":
        return f":red[:material/block:] rejected: {ui.md(record.reject_reason or 'no reason given')}"
    return f":green[:material/check_circle:] kept · {'validation' if record.split == 'val' else 'training'}"


def _details(record: ImageRecord) -> None:
    """Everything the project knows about a photo (drawn in a popover)."""
    st.markdown(f"**Photo #{record.id}** in **{ui.md(record.class_name)}**")
    st.caption(_status(record))
    rows = {
        "Size": f"{record.width} × {record.height} pixels, {ui.file_size(record.size_bytes)}",
        "Came from": SOURCES.get(record.source, record.source),
        "Search words": record.query and ui.md(record.query),
        "Original name": record.original_name and ui.md(record.original_name),
        "Added": dt.datetime.fromtimestamp(record.added).strftime("%Y-%m-%d %H:%M"),
        "File": ui.md(record.path.name),
    }
    st.markdown("\n".join(f"- **{k}:** {v}" for k, v in rows.items() if v))
    if link := ui.md_link("Open the original page ↗", record.source_url):
        st.markdown(link)


def _card(project: Project, record: ImageRecord, key: str):
    """A bordered card with the photo's thumbnail; returns it so callers can add their controls."""
    card = st.container(border=True, key=f"card_{record.status}_{key}")
    with card:
        ui.thumbnail(project, record)
    return card


def _say(kind: str, text: str, place: str = "top") -> None:
    st.session_state["review_message"] = (kind, text, place)


def _act(action: Callable[[], str], clear: list[int] | tuple[int, ...] = (), place: str = "top") -> None:
    """Callback body: run a change, report it (an error at `place`, where `_show_message(place)` is drawn: beside
    the button that was clicked), and untick the photos it touched."""
    try:
        _say("success", action())
    except StoreError as exc:
        _say("error", ui.md(exc), place)
    for image_id in clear:
        st.session_state[f"pick_{image_id}"] = False


def _show_message(place: str = "top") -> None:
    kind, text, where = st.session_state.get("review_message", (None, None, None))
    if where != place:
        return
    st.session_state.pop("review_message")
    if kind == "success":
        st.toast(text, icon="✅")
    elif kind == "error":
        st.error(text)
    elif kind == "info":
        st.info(text)


def _signature(records: list[ImageRecord]) -> int:
    """Changes whenever a photo is added, removed, moved, rejected or restored."""
    return hash(tuple((r.id, r.class_name, r.status) for r in records))


# ---- warnings ---------------------------------------------------------------------------------


def balance_warnings(classes: list[ClassInfo]) -> list[str]:
    """Plain-language problems with the class sizes, most serious first."""
    warnings = []
    if len(classes) < 2:
        warnings.append("A classifier needs **at least two classes**. Add one under **Classes & balance** or on "
                        "the Collect page.")
    for c in classes:
        if c.kept == 0:
            after = " after cleaning" if c.rejected else ""
            warnings.append(f"**{ui.md(c.name)}** has no kept photos{after}: it will be left out of training. "
                            "Add photos, restore some, or delete the class.")
        elif c.kept < ui.MIN_PHOTOS_PER_CLASS:
            warnings.append(f"**{ui.md(c.name)}** has only {ui.plural(c.kept, 'kept photo')}. {ui.photo_advice()}")
    filled = [c for c in classes if c.kept]
    if len(filled) >= 2:
        big = max(filled, key=lambda c: c.kept)
        small = min(filled, key=lambda c: c.kept)
        if big.kept > MAX_IMBALANCE * small.kept:
            warnings.append(f"The classes are unbalanced: **{ui.md(big.name)}** has {big.kept} photos but **{ui.md(small.name)}** "
                            f"only {small.kept} (more than {MAX_IMBALANCE} to 1). The model will lean towards the "
                            "bigger class; add photos to the small one or reject some from the big one.")
    return warnings


# ---- photos tab -------------------------------------------------------------------------------


def _valid_choice(key: str, options: list[str]) -> None:
    """Forget a remembered choice that is gone (a renamed or deleted class) before its widget is drawn."""
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)


def _relabel(key: str, labels: dict[str, str]) -> None:
    """Make a selectbox show its choice's new label: the browser keeps the label it was sent until told again."""
    chosen = st.session_state.get(key)
    if chosen in labels and st.session_state.get(f"{key}_label") != labels[chosen]:
        st.session_state[key] = chosen  # a value set by the script is sent to the browser with its label
    st.session_state[f"{key}_label"] = labels.get(chosen)


def _set_picks(ids: list[int], value: bool) -> None:
    for image_id in ids:
        st.session_state[f"pick_{image_id}"] = value


def _reject(project: Project, ids: list[int], reason: str) -> str:
    project.reject(ids, reason or "rejected by you")
    return f"Rejected {ui.plural(len(ids), 'photo')} ({ui.md(reason)}). They stay in the project; restore them any time."


def _restore(project: Project, ids: list[int]) -> str:
    project.restore(ids)
    return f"Restored {ui.plural(len(ids), 'photo')}."


def _move(project: Project, ids: list[int], target: str) -> str:
    project.move(ids, target)
    return f"Moved {ui.plural(len(ids), 'photo')} to {ui.md(target)}."


def _delete(project: Project, ids: list[int]) -> str:
    project.delete_images(ids)
    st.session_state.pop("confirm_delete_photos", None)
    return f"Deleted {ui.plural(len(ids), 'photo')} for good."


def _page(key: str, items: int, per_page: int) -> tuple[int, int]:
    """(page to show, number of pages) for a `st.pagination` with this key, drawn later."""
    pages = max(1, -(-items // per_page))
    if st.session_state.get(key, 1) > pages:  # the list got shorter: stay on its last page
        st.session_state[key] = pages
    return st.session_state.get(key, 1), pages


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
                      on_click=lambda: _act(lambda: _reject(project, picked, reason), picked))
        row[2].button("Restore", key="restore_selected", icon=":material/undo:", disabled=not picked,
                      width="stretch", on_click=lambda: _act(lambda: _restore(project, picked), picked))
        targets = [c for c in class_names if c != current] or class_names
        if st.session_state.get("move_target") == current:  # a typed new name is kept; the shown class is not a move
            st.session_state.pop("move_target")
        target = row[3].selectbox("Move to class", targets, key="move_target", accept_new_options=True,
                                  help="Pick a class, or type a new name to create that class.")
        row[4].button("Move", key="move_selected", icon=":material/drive_file_move:", width="stretch",
                      disabled=not picked or not target,
                      on_click=lambda: _act(lambda: _move(project, picked, target), picked))
        row[5].button("Delete…", key="delete_selected", icon=":material/delete_forever:", disabled=not picked,
                      width="stretch", help="Removes the files for good. Rejecting is usually enough.",
                      on_click=lambda: st.session_state.update(confirm_delete_photos=picked))
        doomed = st.session_state.get("confirm_delete_photos")
        if doomed:
            st.warning(f"Delete {ui.plural(len(doomed), 'photo')} for good? The files are removed from disk and "
                       "cannot be restored. (Rejecting keeps them out of training without losing them.)")
            with st.container(horizontal=True):
                st.button("Yes, delete them", key="confirm_delete", type="primary", icon=":material/delete_forever:",
                          on_click=lambda: _act(lambda: _delete(project, doomed), doomed))
                st.button("Cancel", key="cancel_delete",
                          on_click=lambda: st.session_state.pop("confirm_delete_photos", None))


def photos_tab(project: Project, classes: list[ClassInfo]) -> None:
    """One class's photos, a page at a time: only the page shown is read from the project."""
    class_names = [c.name for c in classes]
    counts = {c.name: c for c in classes}
    _valid_choice("grid_class", class_names)
    labels = {n: f"{n}  ({counts[n].kept} kept · {counts[n].rejected} rejected)" for n in class_names}
    _relabel("grid_class", labels)
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    # persist_state: kept while another tab is open (its widgets are not drawn then, and would reset)
    current = left.selectbox("Class", class_names, key="grid_class", on_change=_reset_page, format_func=labels.get,
                             persist_state="page")
    status = right.segmented_control("Show", list(STATUS_FILTERS), format_func=STATUS_FILTERS.get,
                                      key="grid_status", default="kept", required=True, on_change=_reset_page,
                                      persist_state="page")
    count = {"kept": counts[current].kept, "rejected": counts[current].rejected}.get(
        status, counts[current].kept + counts[current].rejected)
    page, pages = _page("grid_page", count, PAGE_SIZE)
    on_page = project.images(current, None if status == "all" else status, offset=(page - 1) * PAGE_SIZE,
                             limit=PAGE_SIZE)
    _action_bar(project, class_names, on_page, current)
    if not on_page:
        st.info(f"No {'' if status == 'all' else STATUS_FILTERS[status].lower() + ' '}photos in **{current}**.")
        return
    note, pager = st.columns([3, 2], vertical_alignment="center")
    note.caption(f"Photos {(page - 1) * PAGE_SIZE + 1}–{(page - 1) * PAGE_SIZE + len(on_page)} of {count:,}. "
                 "Faded photos are rejected; click :material/info: for where a photo came from.")
    if pages > 1:
        pager.pagination(pages, key="grid_page")  # not in a horizontal container: it would shrink to one page
    for start in range(0, len(on_page), GRID_COLUMNS):
        for column, record in zip(st.columns(GRID_COLUMNS), on_page[start:start + GRID_COLUMNS]):
            with column, _card(project, record, str(record.id)):
                with st.container(horizontal=True, vertical_alignment="center", gap="small"):
                    st.checkbox(f"{record.width}×{record.height}", key=f"pick_{record.id}")
                    with st.popover("", icon=":material/info:", type="tertiary", help="Where this photo came from"):
                        _details(record)
                st.caption(f"{ui.file_size(record.size_bytes)} · {SOURCES.get(record.source, record.source)}  \n"
                           f"{_status(record)}")


# ---- suspects tab -----------------------------------------------------------------------------


def _find_suspects(project: Project) -> None:
    """Button callback: start checking the photos in the background (a finished check's report is dropped first)."""
    model.forget_check(project)
    try:
        model.start_check(project)
    except Busy as exc:  # another tab started one a moment ago: this page shows that one
        _say("info", str(exc))
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
    with _card(project, record, f"s{record.id}"):
        if elsewhere:
            verb = "looks like" if suspect.clearly_elsewhere else "might be"
            st.markdown(f"Labelled **{ui.md(suspect.class_name)}**, {verb} **{ui.md(suspect.predicted_class)}** "
                        f"({ui.percent(suspect.predicted_probability)})")
            st.caption(f"Of the {model.NEIGHBOURS} photos most like it, {suspect.neighbours_like} are in "
                       f"{ui.md(suspect.predicted_class)} and {suspect.neighbours_own} in {ui.md(suspect.class_name)}.")
        else:
            st.markdown(f"**{ui.md(suspect.class_name)}**, but unlike most of its class")
        st.progress(min(max(suspect.score, 0.0), 1.0), text=f"Suspicion {ui.percent(suspect.score)}")
        st.caption(_facts(record))
        if suspect.clearly_elsewhere:
            st.button(f"Move to {suspect.predicted_class}", key=f"sus_move_{record.id}", type="primary",
                      icon=":material/drive_file_move:", width="stretch",
                      on_click=lambda: _act(lambda: _move(project, [record.id], suspect.predicted_class)))
        elif elsewhere:
            st.caption("The check is unsure: look closely before you move it.")
            st.button(f"Move to {suspect.predicted_class}?", key=f"sus_move_{record.id}", type="tertiary",
                      icon=":material/drive_file_move:", width="stretch",
                      on_click=lambda: _act(lambda: _move(project, [record.id], suspect.predicted_class)))
        reject, fine = st.columns(2, gap="small")
        reject.button("Reject", key=f"sus_reject_{record.id}", icon=":material/block:", width="stretch",
                      help="Off-topic or unusable: leave it out of training (you can restore it later)",
                      on_click=lambda: _act(lambda: _reject(project, [record.id], "flagged as suspect")))
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


# ---- duplicates tab ---------------------------------------------------------------------------


def _keep_one(project: Project, groups: list[tuple[ImageRecord, list[ImageRecord]]]) -> str:
    """Reject all but the chosen photo of each group."""
    others = [r.id for keep, group in groups for r in group if r.id != keep.id]
    project.reject(others, "duplicate")
    return f"Kept one photo of {ui.plural(len(groups), 'group')}; rejected {ui.plural(len(others), 'copy')}."


def _largest(group: list[ImageRecord]) -> ImageRecord:
    return max(group, key=lambda r: (r.width * r.height, r.size_bytes))


def _duplicate_groups(project: Project, signature: int) -> list[list[ImageRecord]]:
    """The project's look-alike groups, recomputed only when the photos change."""
    cached = st.session_state.get("review_duplicates")
    if not cached or cached[0] != (project.name, signature):
        cached = ((project.name, signature), project.duplicate_groups())
        st.session_state["review_duplicates"] = cached
    return cached[1]


def duplicates_tab(project: Project, signature: int) -> None:
    groups = _duplicate_groups(project, signature)
    if not groups:
        st.success("No duplicates: every kept photo is a different picture.")
        return
    copies = sum(len(g) - 1 for g in groups)
    st.markdown(f"**{ui.plural(len(groups), 'group')}** of look-alike photos (the same picture, perhaps resized or "
                "recompressed). Copies make the model look better than it is, so keep one of each: click "
                "**Keep this** under the copy you want, or keep the largest of every group at once.")
    st.button(f"Keep the largest of every group (rejects {ui.plural(copies, 'copy')})", key="dup_keep_all",
              type="primary", icon=":material/filter_none:",
              on_click=lambda: _act(lambda: _keep_one(project, [(_largest(g), g) for g in groups])))
    page, pages = _page("dup_page", len(groups), GROUPS_PER_PAGE)
    if pages > 1:
        st.pagination(pages, key="dup_page")
    for group in groups[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]:
        largest = _largest(group)
        with st.container(border=True):
            names = sorted({r.class_name for r in group})
            if len(names) > 1:
                st.warning(f"The same picture is in several classes: {', '.join(map(ui.md, names))}. Keep it where it belongs.")
            for column, record in zip(st.columns(GRID_COLUMNS), group[:GRID_COLUMNS]):
                with column, _card(project, record, f"d{record.id}"):
                    st.caption(f"**{ui.md(record.class_name)}** · {_facts(record)}")
                    best = record.id == largest.id
                    st.button("Keep this (largest)" if best else "Keep this", key=f"dup_keep_{record.id}",
                              type="primary" if best else "secondary", width="stretch",
                              on_click=lambda keep=record, g=group: _act(lambda: _keep_one(project, [(keep, g)])))
            if len(group) > GRID_COLUMNS:
                st.caption(f"…and {len(group) - GRID_COLUMNS} more copies, rejected too when you keep one.")


# ---- classes tab ------------------------------------------------------------------------------


def balance_chart(classes: list[ClassInfo]) -> alt.Chart:
    """Stacked bars per class: training, validation and rejected photos."""
    parts = {"training": "train", "validation": "val", "rejected": "rejected"}
    data = pd.DataFrame([{"class": c.name, "part": part, "order": i, "photos": getattr(c, field)}
                         for c in classes for i, (part, field) in enumerate(parts.items())])
    return alt.Chart(data).mark_bar().encode(
        y=alt.Y("class:N", title=None, sort=[c.name for c in classes], axis=alt.Axis(labelLimit=220)),
        x=alt.X("sum(photos):Q", title="photos", stack="zero"),
        color=alt.Color("part:N", title=None, sort=list(parts),
                        scale=alt.Scale(domain=list(parts), range=["#1f77b4", "#9ecae9", "#c7c7c7"]),
                        legend=alt.Legend(orient="top")),
        order=alt.Order("order:Q"),
        tooltip=["class", "part", "photos"],
    ).properties(height=alt.Step(34))


def _add_class(project: Project) -> str:
    name = project.add_class(st.session_state.get("new_class", ""))
    st.session_state["new_class"] = ""
    return f"Added the class {ui.md(name)}. Collect photos for it on the Collect page."


def _rename_class(project: Project, old: str) -> str:
    new = project.rename_class(old, st.session_state.get("rename_to", ""))
    st.session_state["rename_to"] = ""
    for key in ("grid_class", "rename_from"):
        if st.session_state.get(key) == old:
            st.session_state[key] = new
    return f"Renamed {ui.md(old)} to {ui.md(new)}."


def _delete_class(project: Project, name: str) -> str:
    count = project.delete_class(name)
    st.session_state.pop("confirm_delete_class", None)
    return f"Deleted the class {ui.md(name)} and its {ui.plural(count, 'photo')}."


def _class_table(classes: list[ClassInfo]) -> pd.DataFrame:
    return pd.DataFrame([{"Class": c.name, "Kept": c.kept, "Training": c.train, "Validation": c.val,
                          "Rejected": c.rejected} for c in classes])


def _manage_classes(project: Project, classes: list[ClassInfo]) -> None:
    """Add, rename and delete classes; deleting asks first and says how many photos go."""
    names = [c.name for c in classes]
    add, rename, delete = st.columns(3)
    with add.container(border=True, height="stretch"):
        st.text_input("Add a class", key="new_class", placeholder="e.g. llama")
        st.button("Add class", key="add_class", icon=":material/add:",
                  on_click=lambda: _act(lambda: _add_class(project), place="add_class"))
        _show_message("add_class")
    with rename.container(border=True, height="stretch"):
        _valid_choice("rename_from", names)
        old = st.selectbox("Rename a class", names, key="rename_from")
        st.text_input("New name", key="rename_to", placeholder="the new name")
        st.button("Rename", key="rename_class", icon=":material/edit:", disabled=not names,
                  on_click=lambda: _act(lambda: _rename_class(project, old), place="rename_class"))
        _show_message("rename_class")
    with delete.container(border=True, height="stretch"):
        _valid_choice("delete_class_name", names)
        doomed = st.selectbox("Delete a class", names, key="delete_class_name")
        st.button("Delete class…", key="delete_class", icon=":material/delete_forever:", disabled=not names,
                  on_click=lambda: st.session_state.update(confirm_delete_class=doomed))
        info = next((c for c in classes if c.name == st.session_state.get("confirm_delete_class")), None)
        if info:
            st.warning(f"Delete **{ui.md(info.name)}** and its {ui.plural(info.kept + info.rejected, 'photo')} "
                       f"({info.kept} kept, {info.rejected} rejected) for good? This cannot be undone.")
            with st.container(horizontal=True):
                st.button("Yes, delete the class", key="confirm_delete_class_yes", type="primary",
                          on_click=lambda: _act(lambda: _delete_class(project, info.name), place="delete_class"))
                st.button("Cancel", key="cancel_delete_class",
                          on_click=lambda: st.session_state.pop("confirm_delete_class", None))
        _show_message("delete_class")


def classes_tab(project: Project, classes: list[ClassInfo]) -> None:
    chart, table = st.columns([3, 2], gap="large")
    with chart:
        st.markdown("#### Photos per class")
        st.altair_chart(balance_chart(classes), width="stretch")
        if not balance_warnings(classes):
            st.success("Every class has enough photos and the classes are balanced.")
    with table:
        st.markdown("#### Counts")
        st.dataframe(_class_table(classes), hide_index=True, width="stretch")
        st.caption(f"About {ui.percent(project.val_share)} of each class is held out as **validation** photos: "
                   "the model never trains on them, so they show honestly how well it does on new photos. Each photo "
                   "keeps its part as the set grows.")
    st.markdown("#### Manage classes")
    _manage_classes(project, classes)


# ---- the page ---------------------------------------------------------------------------------


project = ui.require_project()
classes = project.classes()  # counts only: a page of photos is read when it is shown
if not any(c.kept or c.rejected for c in classes):
    ui.missing("This project has no photos yet. Collect some from the web, your computer or a webcam first.",
               "collect", "Go to 1 · Collect photos", icon="📷")

st.title("🧹 Review your photos")
st.markdown("Good photos make a good model. Throw out photos that don't show the class, fix wrong labels, and "
            "keep one copy of each duplicate. Nothing is lost: rejected photos stay in the project and can be "
            "restored.")
st.html(THUMBNAIL_CSS)
_show_message()

metrics = st.columns(4)
metrics[0].metric("Classes", len(classes))
metrics[1].metric("Photos kept", f"{sum(c.kept for c in classes):,}")
metrics[2].metric("Rejected", f"{sum(c.rejected for c in classes):,}")
metrics[3].metric("Validation photos", sum(c.val for c in classes))
problems = balance_warnings(classes)
if problems:
    st.warning("\n".join(f"- {p}" for p in problems))

photos, suspects_section, duplicates, balance = st.tabs(TABS, key="review_tab", on_change="rerun")
if photos.open:
    with photos:
        photos_tab(project, classes)
if suspects_section.open:
    with suspects_section:
        suspects_tab(project, project.images(status="kept"), classes)
if duplicates.open:
    with duplicates:
        duplicates_tab(project, _signature(project.images()))
if balance.open:
    with balance:
        classes_tab(project, classes)

st.divider()
ui.readiness_line(project)
st.page_link(ui.PAGES["train"], label="Photos look good? Next: 3 · Train your model", icon="🏋️")
