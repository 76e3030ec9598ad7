"""Review page: look through the photos, throw out the bad ones, fix labels and balance the classes.

Each tab is its own module: pages/review_photos.py, review_suspects.py, review_duplicates.py, review_classes.py
(what they share: pages/review_shared.py); this file draws the page around them.

Every change goes through `core.store.project.Project`; a rejected photo stays in the project and can be
restored. The suspect ranking (`core.model.suspects`) is kept in the project, so a refresh shows it again.
"""

from __future__ import annotations

import streamlit as st

from pages import ui
from pages.review_classes import balance_warnings, classes_tab
from pages.review_duplicates import duplicates_tab
from pages.review_photos import photos_tab
from pages.review_shared import show_message, signature
from pages.review_suspects import suspects_tab

TABS = [":material/photo_library: Photos", ":material/search: Suspects", ":material/content_copy: Duplicates",
        ":material/balance: Classes & balance"]

# Square, letter-boxed thumbnails: photos of every shape line up in a tidy grid and none is cropped.
THUMBNAIL_CSS = """<style>
[class*="st-key-card_"] [data-testid="stImage"] img {
  aspect-ratio: 1 / 1; object-fit: contain; background: rgba(128, 128, 128, 0.08); border-radius: 6px; }
[class*="st-key-card_rejected"] [data-testid="stImage"] img { opacity: 0.45; }
[class*="st-key-card_"]:has(input[type="checkbox"]:checked) { border-color: #1f77b4; box-shadow: 0 0 0 1px #1f77b4; }
</style>"""


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
show_message()

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
        duplicates_tab(project, signature(project.images()))
if balance.open:
    with balance:
        classes_tab(project, classes)

st.divider()
ui.readiness_line(project)
st.page_link(ui.PAGES["train"], label="Photos look good? Next: 3 · Train your model", icon="🏋️")
