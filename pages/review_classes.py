"""Review's Classes & balance tab: photos per class, the warnings about their sizes, adding, renaming and deleting
classes."""

from __future__ import annotations

import altair as alt
import pandas as pd
import streamlit as st

from core.store.api import MAX_IMBALANCE, ClassInfo, Project, balance_problems
from pages import ui
from pages.review_shared import act, show_message, valid_choice


def balance_warnings(classes: list[ClassInfo]) -> list[str]:
    """Plain-language problems with the class sizes, most serious first (`core.store.balance` finds them)."""
    warnings = []
    for p in balance_problems(classes, ui.MIN_PHOTOS_PER_CLASS):
        if p.kind == "too_few_classes":
            warnings.append("A classifier needs **at least two classes**. Add one under **Classes & balance** or on "
                            "the Collect page.")
        elif p.kind == "empty":
            after = " after cleaning" if p.rejected else ""
            warnings.append(f"**{ui.md(p.name)}** has no kept photos{after}: it will be left out of training. "
                            "Add photos, restore some, or delete the class.")
        elif p.kind == "thin":
            warnings.append(f"**{ui.md(p.name)}** has only {ui.plural(p.count, 'kept photo')}. {ui.photo_advice()}")
        else:
            warnings.append(f"The classes are unbalanced: **{ui.md(p.name)}** has {p.count} photos but "
                            f"**{ui.md(p.other)}** only {p.other_count} (more than {MAX_IMBALANCE} to 1). The model "
                            "will lean towards the bigger class; add photos to the small one or reject some from the "
                            "big one.")
    return warnings


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
                  on_click=lambda: act(lambda: _add_class(project), place="add_class"))
        show_message("add_class")
    with rename.container(border=True, height="stretch"):
        valid_choice("rename_from", names)
        old = st.selectbox("Rename a class", names, key="rename_from")
        st.text_input("New name", key="rename_to", placeholder="the new name")
        st.button("Rename", key="rename_class", icon=":material/edit:", disabled=not names,
                  on_click=lambda: act(lambda: _rename_class(project, old), place="rename_class"))
        show_message("rename_class")
    with delete.container(border=True, height="stretch"):
        valid_choice("delete_class_name", names)
        doomed = st.selectbox("Delete a class", names, key="delete_class_name")
        st.button("Delete class…", key="delete_class", icon=":material/delete_forever:", disabled=not names,
                  on_click=lambda: st.session_state.update(confirm_delete_class=doomed))
        info = next((c for c in classes if c.name == st.session_state.get("confirm_delete_class")), None)
        if info:
            st.warning(f"Delete **{ui.md(info.name)}** and its {ui.plural(info.kept + info.rejected, 'photo')} "
                       f"({info.kept} kept, {info.rejected} rejected) for good? This cannot be undone.")
            with st.container(horizontal=True):
                st.button("Yes, delete the class", key="confirm_delete_class_yes", type="primary",
                          on_click=lambda: act(lambda: _delete_class(project, info.name), place="delete_class"))
                st.button("Cancel", key="cancel_delete_class",
                          on_click=lambda: st.session_state.pop("confirm_delete_class", None))
        show_message("delete_class")


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

