"""The Train page's choice of network: the picker and its table, and the expanders that weigh time, gain and
cost per network and depth."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.jobs import api as jobs
from core.model import api as model
from core.model.api import OFFERED, REGISTRY, BackboneSpec, backbone_label, get_backbone
from core.store.api import Project
from pages import ui
from pages.train_settings import CHOICES, LIVE_SECONDS, backbone_chosen, key
from pages.train_speed import measuring_view, start_measuring
from pages.train_text import (availability, choice_label, depth_advice, depth_short, gain_cell, gain_points,
                              photos_a_class, short_label, speed_text)


def backbone_table(speeds: dict[str, dict]) -> pd.DataFrame:
    """One row per backbone, joined ones last: what a person weighs when choosing one (a joined one's speed is its
    members' together; `speeds`: core.model.speed.cached_speeds)."""
    measured = model.with_joined_speeds(speeds)
    relative = model.relative_speeds(measured)
    return pd.DataFrame([{
        "Network": spec.label,
        "Photo size": f"{spec.input_size} px",  # a joined choice's members all read the largest member's size
        "Parameters": f"{spec.params / 1e6:.1f} M",
        "Available": availability(spec),
        "Speed here": speed_text(spec.name, measured, relative),
    } for spec in map(get_backbone, CHOICES)])


def backbone_picker(project: Project) -> BackboneSpec:
    st.selectbox(
        "Pretrained network (backbone)", CHOICES, key=key("backbone"), on_change=backbone_chosen, args=(project,),
        format_func=choice_label,
        help="The network that already knows thousands of everyday objects. Your model reuses what it sees. Joined "
             "networks (A + B) each look at the photo, and one head reads them all.")
    spec = get_backbone(st.session_state[key("backbone")])
    st.caption(spec.description)
    if not spec.weights_cached():
        st.warning(f"{spec.label} downloads its pretrained weights the first time. Without an internet "
                   "connection the run will fail; the EfficientNet-Lite networks work offline.")
    return spec


def networks_view(speeds: dict[str, dict], busy: bool) -> None:
    """The table of networks with the `speeds` measured so far, every row in sight, and timing them on this
    computer."""
    names = list(REGISTRY)
    table = backbone_table(speeds)
    st.dataframe(table, hide_index=True, key="backbone_table", height=ui.table_height(len(table)), column_config={
        # wide enough for the joined names: left to itself a 1024-px screen cut "EfficientNet-Lite0 + Lite1 + Lite2"
        "Network": st.column_config.TextColumn(width=200),
        "Photo size": st.column_config.TextColumn(width="small", help="Photos are resized to this before the network "
                                                  "sees them. Joined networks all read the photo at the largest one's "
                                                  "size; the smaller ones shrink it to their own inside the model."),
        "Parameters": st.column_config.TextColumn(width="small", help="Numbers inside the network: its size."),
        "Available": st.column_config.TextColumn(help="Offline: works without an internet connection. Needs "
                                                 "internet: downloads its pretrained weights the first time it "
                                                 "trains; after that it is downloaded and works offline too."),
    })
    unmeasured = [n for n in names if n not in speeds]
    task = jobs.measuring()
    view = task.view() if task else None
    timing = view is not None and view.running
    st.button("⏱️ Measure speed on this computer" if unmeasured else "⏱️ Measure speed again",
              key="measure_speed", disabled=busy or timing, on_click=start_measuring, args=(unmeasured or names,),
              help="Stop the training run first: it would slow the timing down." if busy else
              "Times each network on random pixels, here, so you can weigh speed against size.")
    if busy_message := st.session_state.pop("speed_busy", None):
        st.info(busy_message, icon="⏳")
    st.fragment(run_every=LIVE_SECONDS if timing else None)(measuring_view)(timing, view.done if view else 0)
    st.caption("Speed: milliseconds the network takes to look at one photo on this computer, and in brackets how "
               "many times the fastest network's time that is; training time grows with it."
               + (" Timing every network takes a few minutes." if unmeasured else ""))


def advice_view(photos: int, speeds: dict[str, dict], choices: list[model.Cost], sign: str | None,
                chosen: str) -> None:
    """Expected time of a first run on this computer and measured accuracy gain, per offline network and depth;
    the `sign` that the last run's photos look unlike everyday ones (core.model.advice.unlike_everyday), with what to
    retrain with the network `chosen`, or what the recommended joined `choices` gained there with the head alone."""
    rows = model.advice(photos, speeds)
    if sign:
        joined = next(c for c in choices if c.backbone == model.RECOMMENDED)
        st.info(f"Your photos look unlike everyday photos ({sign}), so fine-tuning is likely to help"
                + depth_advice(model.suggested_depth(rows), chosen,
                               joined.gains[model.UNLIKE_SET] if joined.gains else None), icon="💡")
    # a row per network and depth, so that the times and both gains fit the page's width side by side
    table = pd.DataFrame([{
        "Network": short_label(r.backbone),
        "Retrain": depth_short(r.blocks),
        "Time here": f"~{ui.duration(r.seconds)}",
        "Gain: everyday photos": gain_points(r, r.gain),
        "Gain: unlike them": gain_points(r, r.gain_unlike),
    } for r in rows])
    with st.expander(f"Which network and depth? Expected time for {ui.plural(photos, 'photo')}, and measured gain"):
        st.dataframe(table, hide_index=True, key="depth_advice", height=ui.table_height(len(table)))
        untimed = not all(r.timed_here for r in rows)
        st.caption("Time of a first run here (later runs reuse what was computed)"
                   + (", estimated from a reference laptop until the speeds are measured above" if untimed else "")
                   + ". Gain (pts): how many more validation photos in 100 it named right than EfficientNet-Lite0's "
                   "head alone, where measured: on everyday photos (flowers, ants vs bees) and on photos unlike them "
                   "(grocery-shelf photos, tiny 32-pixel photos; for Lite1 and Lite2, the grocery photos only). When "
                   "retraining does not beat the head on your validation photos, the run keeps the head: try the head "
                   "alone first, it takes seconds.")


def costs_view(photos: int, classes: int, rows: list[model.Cost], chosen: str, unlike: bool) -> None:
    """What the joined networks gain over Lite0 alone and what they cost (`rows`, core.model.advice.costs: preparing
    this project's photos, Try it, the live webcam's rate, the model's size), and whether they pay on a project like
    this one: like the measured set of photos unlike everyday ones when the last run's look so (`unlike`), else like
    the set nearest in classes."""
    best = rows[1]  # the joined choice recommended first
    at = best.gain_photos or (None,) * len(model.MEASURED_SETS)
    measures = {
        # the photos a class each gain was measured at are said under the table: in these labels the table scrolled
        **{f"Gain: {name}": (lambda r, i=i: gain_cell(r, i)) for i, (name, _) in enumerate(model.MEASURED_SETS)},
        f"Preparing {ui.plural(photos, 'photo')}": lambda r: f"~{ui.duration(r.prepare_seconds)}",
        "Try it, per photo": lambda r: "—" if r.try_ms is None else f"~{r.try_ms:.0f} ms",
        "Live webcam, pictures a second": lambda r: "—" if r.live_fps is None else f"~{r.live_fps:.0f}",
        "Model size": lambda r: f"{r.size_mb:.0f} MB",
        "A download, at most": lambda r: f"{r.download_mb:.0f} MB",
    }
    # one column per choice, so that every cost is in sight beside the gains
    table = pd.DataFrame([{"": measure, **{short_label(r.backbone): cell(r) for r in rows}}
                          for measure, cell in measures.items()])
    alike = model.UNLIKE_SET if unlike else model.most_alike(classes)
    with st.expander("Joined networks: what they gain and what they cost", expanded=chosen in OFFERED):
        st.dataframe(table, hide_index=True, key="joined_costs", height=ui.table_height(len(table)))
        if best.gains is not None:
            name, measured_classes = model.MEASURED_SETS[alike]
            gain = best.gains[alike]
            like = "of photos unlike everyday ones, as yours look" if unlike else \
                "whose number of classes is nearest yours"
            st.markdown(f"On the measured photo set {like} ({name}, "
                        f"{measured_classes} classes, trained on {at[alike]} photos a class) "
                        f"**{backbone_label(best.backbone)}** named {abs(gain):.1f} "
                        f"{'more' if gain >= 0 else 'fewer'} photos in 100 right than EfficientNet-Lite0 alone. " + (
                            "Joining pays most with many classes that look alike, and with few photos a class."
                            if gain >= 2 else
                            "With few, everyday classes the gain is small: Lite0 alone is faster and nearly as good."
                            if gain >= 0 else "Lite0 alone did better there, and it is faster."))
        untimed = not all(r.timed_here for r in rows)
        per_class = ui.plural(round(model.TRAIN_SHARE * photos / max(classes, 1)), "photo")
        st.caption("Gain (pts): how many more validation photos in 100 each joined choice named right than "
                   "EfficientNet-Lite0 alone (new head only), the mean of 8 draws of each set's training and "
                   f"validation photos, trained on {photos_a_class(at)} photos a class: the count measured nearest "
                   f"your project's (about {per_class} a class to train on). Preparing: looking at every photo once "
                   "per network, in the background as photos arrive"
                   + (" (estimated from a reference laptop until the speeds are measured above)" if untimed else "")
                   + ". Try it and the live webcam: measured on a 2-core laptop-class computer; every network of a "
                   "joined choice looks at each picture and its mirror image, so they take longer (Try it's time is "
                   "the whole answer: more than the speed above, which is one look by the network). A download "
                   "(model.tflite, model.keras) also keeps what the networks saw in your training photos, for the "
                   "check that tells when a photo is none of your classes: with many photos it reaches the size "
                   "shown.")
    if chosen in OFFERED:
        cost, reference = next(r for r in rows if r.backbone == chosen), rows[0]
        if cost.live_fps is not None and reference.live_fps is not None:
            st.caption(f"🎥 With {backbone_label(chosen)} the live webcam shows about {cost.live_fps:.0f} pictures a "
                       f"second (EfficientNet-Lite0 alone: about {reference.live_fps:.0f}).")
