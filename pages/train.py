"""Train page: pick a pretrained network and how much of it to retrain, start a run, watch it learn live.

Training is a background job (`core.jobs.server`): this page starts it, asks it to stop and reads its
progress back from the project store. Leaving the page, refreshing or closing the tab never
touches the run, and coming back finds it again (the active run, else the latest one).

Each part is its own module: the settings (pages/train_settings.py), the choice of network with its speed timing
(train_networks.py, train_speed.py), the run's view (train_run.py) and the sentences they use (train_text.py); this
file draws the page from them.
"""

from __future__ import annotations

import streamlit as st

from core.jobs import api as jobs
from core.model import api as model
from pages import ui
from pages.train_networks import advice_view, backbone_picker, costs_view, networks_view
from pages.train_run import how_it_works, preparing_downloads, show_run
from pages.train_settings import (LIVE_SECONDS, advanced_settings, depth_picker, init_settings, main_settings,
                                  photos_section, start, start_refused)

# ---- the page -------------------------------------------------------------------------------------

st.title("🏋️ Train your classifier")
st.markdown("TransferLab starts from a network already trained on millions of photos and teaches a small new "
            "*head* on top of it your classes. If you like, it also retrains the last part of the network.")

project = ui.require_project()
init_settings(project)
active = jobs.active_run(project)
runs = project.runs()

if active:
    st.fragment(run_every=LIVE_SECONDS)(show_run)(project, active.id, True)
elif runs:
    waiting = preparing_downloads(project, runs[0])
    st.fragment(run_every=LIVE_SECONDS if waiting else None)(show_run)(project, runs[0].id, False, waiting)
if runs:
    st.divider()

# While a run trains the settings stay out of the way: the page is short, so the live view is what is in sight.
if not active or st.toggle("Show the photos and settings for the next run", key="train_show_setup"):
    photos, about = st.columns([2, 1], gap="large")
    with photos:
        ready = photos_section(project)
    with about:
        how_it_works(first_time=not runs)

    st.subheader("Settings for the next run" if runs else "Settings")
    network, depth = st.columns([2, 1], gap="large")
    filled = [c for c in project.classes() if c.kept]  # one count of 50,000 photos, not three
    kept, train_photos = sum(c.kept for c in filled), sum(c.train for c in filled)
    with network:
        spec = backbone_picker(project)
    with depth:
        blocks = depth_picker(spec, max(2, len(filled)))
        main_settings(fine_tuning=blocks > 0, train_photos=train_photos)
    # the tables that weigh one network against another take the page's whole width: in a column they scrolled
    # sideways, hiding networks, at 1280 px and below
    speeds = model.cached_speeds()  # read once: every table below weighs the same timings
    networks_view(speeds, busy=active is not None)
    sign = model.unlike_everyday(runs[0].summary if runs else {})
    choices = model.costs(kept, speeds, len(filled))
    costs_view(kept, len(filled), choices, spec.name, unlike=sign is not None)
    advice_view(kept, speeds, choices, sign, spec.name)
    advanced_settings(fine_tuning=blocks > 0, train_photos=train_photos)

    st.button("🏋️ Train", type="primary", key="train_start", disabled=not ready or active is not None,
              help="A run is in progress: stop it or wait for it to finish." if active else
              "Starts training in the background with the settings above.", on_click=start, args=(project,))
    start_refused()
    if active:
        st.caption(f"Run {active.id} is training: stop it or wait for it to finish before starting another.")
