"""Results' view of where a model goes wrong, readable at 3 classes and at 100.

Up to MATRIX_CLASSES classes the confusion matrix is drawn whole: every cell is big enough to read. Past that it
is thousands of cells, so the view leads with the most confused pairs (real class, what the model said, how many
photos) and draws the full matrix only when asked.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.serving.api import most_confused
from pages import charts, ui

MATRIX_CLASSES = 12  # the chart's cells stay readable in half a page up to about this many classes
PAIRS_SHOWN = 15
# Streamlit floats a narrow chart's toolbar (full screen, download…) above the chart: room for it there, so that it
# covers no text above the confusion matrix.
TOOLBAR_ROOM_CSS = "<style>.st-key-confusion_chart { padding-top: 2.75rem; }</style>"


def matrix(class_names: list[str], confusion: list[list[int]]) -> None:
    st.html(TOOLBAR_ROOM_CSS)
    with st.container(key="confusion_chart"):
        st.altair_chart(charts.confusion_chart(class_names, confusion), width="content")
    st.caption("Each row is the real class of the validation photos, each column what the model said. "
               "The diagonal counts the right answers; any other cell is a mix-up.")


def confused_pairs(class_names: list[str], confusion: list[list[int]]) -> None:
    """The largest mix-ups as a table, and the whole matrix on demand."""
    pairs = most_confused(class_names, confusion, PAIRS_SHOWN)
    if not pairs:
        st.success("No mix-ups: every validation photo was named right.")
    else:
        table = pd.DataFrame(pairs).rename(columns={"real": "Real class", "said": "Model said", "photos": "Photos",
                                                    "share": "Share"})
        table["Share"] *= 100
        st.dataframe(table, hide_index=True, key="confused_pairs", column_config={
            "Photos": st.column_config.NumberColumn(help="Validation photos of the real class named this way."),
            "Share": st.column_config.NumberColumn(format="%.0f%%", help="Of the real class's validation photos."),
        })
        st.caption(f"The {ui.plural(len(pairs), 'mix-up')} that cost the most, of {len(class_names)} classes. "
                   "Photos in both classes of a pair often show the same thing: look at them on Review.")
    if st.toggle(f"Show the full {len(class_names)} × {len(class_names)} confusion matrix", key="full_confusion"):
        matrix(class_names, confusion)


def confusion_view(class_names: list[str], confusion: list[list[int]]) -> None:
    """'Where it goes wrong': the matrix for a few classes, the most confused pairs first for many."""
    if len(class_names) <= MATRIX_CLASSES:
        st.markdown("**Where it goes wrong** (confusion matrix)")
        matrix(class_names, confusion)
    else:
        st.markdown("**Where it goes wrong** (most confused classes)")
        confused_pairs(class_names, confusion)
