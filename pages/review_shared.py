"""What the Review page's tabs share: photo cards and their captions, the one message line, and the changes more
than one tab makes (reject, move), each reported the same way."""

from __future__ import annotations

import datetime as dt
from typing import Callable

import streamlit as st

from core.store.api import ImageRecord, Project, StoreError
from pages import ui

GRID_COLUMNS = 5
SOURCES = {"web": "web search", "upload": "upload", "zip": "zip file", "folder": "folder", "webcam": "webcam"}


def facts(record: ImageRecord) -> str:
    """One caption line: size, weight and origin."""
    return f"{record.width}×{record.height} · {ui.file_size(record.size_bytes)} · {SOURCES.get(record.source, record.source)}"


def status_line(record: ImageRecord) -> str:
    if record.status == "rejected":
        return f":red[:material/block:] rejected: {ui.md(record.reject_reason or 'no reason given')}"
    return f":green[:material/check_circle:] kept · {'validation' if record.split == 'val' else 'training'}"


def details(record: ImageRecord) -> str:
    """Everything the project knows about a photo, as markdown for the tooltip beside its tick box (a tooltip is
    drawn only when pointed at: a popover per photo cost about a second per page of 40)."""
    rows = {
        "Size": f"{record.width} × {record.height} pixels, {ui.file_size(record.size_bytes)}",
        "Came from": SOURCES.get(record.source, record.source),
        "Search words": record.query and ui.md(record.query),
        "Original name": record.original_name and ui.md(record.original_name),
        "Added": dt.datetime.fromtimestamp(record.added).strftime("%Y-%m-%d %H:%M"),
        "File": ui.md(record.path.name),
    }
    lines = [f"**Photo #{record.id}** in **{ui.md(record.class_name)}**", status_line(record),
             "\n".join(f"- **{k}:** {v}" for k, v in rows.items() if v)]
    if link := ui.md_link("Open the original page ↗", record.source_url):
        lines.append(link)
    return "\n\n".join(lines)


def card(project: Project, record: ImageRecord, key: str):
    """A bordered card with the photo's thumbnail; returns it so callers can add their controls."""
    card = st.container(border=True, key=f"card_{record.status}_{key}")
    with card:
        ui.thumbnail(project, record)
    return card


def say(kind: str, text: str, place: str = "top") -> None:
    st.session_state["review_message"] = (kind, text, place)


def act(action: Callable[[], str], clear: list[int] | tuple[int, ...] = (), place: str = "top") -> None:
    """Callback body: run a change, report it (an error at `place`, where `show_message(place)` is drawn: beside
    the button that was clicked), and untick the photos it touched."""
    try:
        say("success", action())
    except StoreError as exc:
        say("error", ui.md(exc), place)
    for image_id in clear:
        st.session_state[f"pick_{image_id}"] = False


def show_message(place: str = "top") -> None:
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


def signature(records: list[ImageRecord]) -> int:
    """Changes whenever a photo is added, removed, moved, rejected or restored."""
    return hash(tuple((r.id, r.class_name, r.status) for r in records))


def valid_choice(key: str, options: list[str]) -> None:
    """Forget a remembered choice that is gone (a renamed or deleted class) before its widget is drawn."""
    if st.session_state.get(key) not in options:
        st.session_state.pop(key, None)


def reject_photos(project: Project, ids: list[int], reason: str) -> str:
    project.reject(ids, reason or "rejected by you")
    return f"Rejected {ui.plural(len(ids), 'photo')} ({ui.md(reason)}). They stay in the project; restore them any time."


def move_photos(project: Project, ids: list[int], target: str) -> str:
    project.move(ids, target)
    return f"Moved {ui.plural(len(ids), 'photo')} to {ui.md(target)}."


def page_of(key: str, items: int, per_page: int) -> tuple[int, int]:
    """(page to show, number of pages) for a `st.pagination` with this key, drawn later."""
    pages = max(1, -(-items // per_page))
    if st.session_state.get(key, 1) > pages:  # the list got shorter: stay on its last page
        st.session_state[key] = pages
    return st.session_state.get(key, 1), pages

