"""Review's Duplicates tab: groups of look-alike photos, keep one of each."""

from __future__ import annotations

import streamlit as st

from core.store.api import ImageRecord, Project
from pages import ui
from pages.review_shared import GRID_COLUMNS, act, card, facts, page_of

GROUPS_PER_PAGE = 8


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
              on_click=lambda: act(lambda: _keep_one(project, [(_largest(g), g) for g in groups])))
    page, pages = page_of("dup_page", len(groups), GROUPS_PER_PAGE)
    if pages > 1:
        st.pagination(pages, key="dup_page")
    for group in groups[(page - 1) * GROUPS_PER_PAGE: page * GROUPS_PER_PAGE]:
        largest = _largest(group)
        with st.container(border=True):
            names = sorted({r.class_name for r in group})
            if len(names) > 1:
                st.warning(f"The same picture is in several classes: {', '.join(map(ui.md, names))}. Keep it where it belongs.")
            for column, record in zip(st.columns(GRID_COLUMNS), group[:GRID_COLUMNS]):
                with column, card(project, record, f"d{record.id}"):
                    st.caption(f"**{ui.md(record.class_name)}** · {facts(record)}")
                    best = record.id == largest.id
                    st.button("Keep this (largest)" if best else "Keep this", key=f"dup_keep_{record.id}",
                              type="primary" if best else "secondary", width="stretch",
                              on_click=lambda keep=record, g=group: act(lambda: _keep_one(project, [(keep, g)])))
            if len(group) > GRID_COLUMNS:
                st.caption(f"…and {len(group) - GRID_COLUMNS} more copies, rejected too when you keep one.")

