"""Try it: show a trained model new photos (files or a webcam shot): its guess, how sure it is, where it looked."""

from __future__ import annotations

import io
import math
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from PIL import Image

from core.jobs import api as jobs
from core.serving.api import (NOT_SURE, SURE, UNFAMILIAR, Arrivals, Bar, ImageRejected, NotConverted, Prediction,
                              decode_at, overlay_heatmap, sha256_hex, summary_rows, unseen_share)
from core.model.api import NoveltySettings, set_threshold
from core.store.api import RunFolderInvalid
from core.jobs.api import finished_runs
from pages import ui, webcam

PREVIEW_SIDE = 800   # shown on screen and under the heat map; the model itself looks at far fewer pixels
TOP_K = 5
PER_PAGE = 8         # photo details per page, so heat maps are only worked out for what is on screen
OPEN_DETAILS = 3
HEAT_ALPHA = 0.7     # stronger than overlay_heatmap's default: the glow must be obvious to a newcomer
WEBCAM_MODES = ["Live", "Still photo"]
CONVERTING = ("Getting this fine-tuned model ready for this page (a few seconds after training; the page "
              "carries on by itself)…")
SURE_COLOUR, UNSURE_COLOUR, LINE_COLOUR = "#2e7d32", "#9e9e9e", "#c62828"
FALSE_ALARM_CHOICES = (0.01, 0.02, 0.05, 0.10, 0.20)  # shares of the run's own unseen photos it may wrongly flag


def jpeg(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


@st.cache_data(max_entries=256, show_spinner=False)
def preview(data: bytes) -> bytes:
    """The photo decoded by the dataset's rules, as a screen-sized JPEG; raises ImageRejected when unusable.
    Decoded straight at about screen size: a forged photo never costs its full size in memory."""
    return jpeg(decode_at(data, PREVIEW_SIDE))


@st.cache_data(max_entries=32, show_spinner="Looking at your photos…")
def predict(run_dir: str, photos: tuple[bytes, ...], top_k: int) -> list[Prediction]:
    """Every photo through the model, a few decoded at a time (cached, so moving the slider costs nothing)."""
    return ui.load_predictor(Path(run_dir)).predict_uploads(photos, top_k)


@st.cache_data(max_entries=256, show_spinner="Working out where the model looked…")
def heat_map(run_dir: str, data: bytes) -> tuple[bytes, float]:
    """The whole photo with the class activation map of the model's top class laid over the part the model saw,
    as a JPEG; and the share of the photo cut off before the model looked."""
    image = decode_at(data, PREVIEW_SIDE)
    return (jpeg(overlay_heatmap(image, ui.load_heat_mapper(Path(run_dir)).heat_map(image), HEAT_ALPHA)),
            unseen_share(image.size))


def heat_caption(unseen: float) -> str:
    if unseen < 0.01:  # a pixel row or two: not worth a word
        return "Where it looked"
    return (f"Where it looked. The model sees only the square in the middle: the dimmed edges "
            f"({ui.percent(unseen)} of the photo) were cut off.")


def verdict(prediction: Prediction, bar: Bar) -> str:
    said = bar.verdict(prediction)
    if said == UNFAMILIAR:
        return ("**This doesn't look like any of your classes.**  \n"
                f":small[Closest: {ui.md(prediction.label)} ({ui.percent(prediction.confidence)})]")
    sure = ui.percent_beside(prediction.confidence, bar.sure)
    if said == SURE:
        return f"Looks like **{ui.md(prediction.label)}** ({sure})"
    return f"Not sure — its best guess is **{ui.md(prediction.label)}** ({sure}), below your {ui.percent(bar.sure)} bar"


def show_verdict(prediction: Prediction, bar: Bar) -> None:
    """The verdict in green when the model is sure, else in amber."""
    (st.success if bar.verdict(prediction) == SURE else st.warning)(verdict(prediction, bar))


def novelty_bar(run_dir: Path, column) -> float | None:
    """The run's "not one of your classes" threshold in force, with a control that changes it for the run (kept in
    its folder); None for a run without the check."""
    try:
        settings = NoveltySettings.load(run_dir)
    except RunFolderInvalid:
        settings = None
    if settings is None or not settings.own_scores:
        return None
    current = min(FALSE_ALARM_CHOICES, key=lambda share: abs(share - (settings.false_alarms() or 0.0)))
    chosen = column.select_slider(
        "Say “not one of your classes”", FALSE_ALARM_CHOICES, value=current, key=f"predict_novelty_{run_dir.name}",
        format_func=lambda share: f"{round(share * 100)} in 100",
        help="A photo unlike every class the model knows gets “This doesn't look like any of your classes” instead "
             "of a confident wrong label. This setting is how many of 100 photos of your own classes it may "
             "wrongly say that about (measured on photos of your classes it did not compare with): more catches more "
             "strangers. It is kept with this model, for every page and the downloads.")
    if chosen != current:
        settings = set_threshold(run_dir, settings.threshold_for(chosen))
    return settings.threshold


def probability_chart(prediction: Prediction, threshold: float, familiar: bool = True) -> alt.LayerChart:
    """Horizontal bars of the top classes, green where they clear the user's bar (none for a photo unlike every
    class), with the bar as a dashed line."""
    data = pd.DataFrame(prediction.top, columns=["class", "probability"])
    base = alt.Chart(data).encode(
        x=alt.X("probability:Q", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%", title="how sure")),
        # The order is written into the chart itself: with sort=None the browser kept the order of the chart drawn
        # there before (another photo's) when a new photo pushed the others down the list.
        y=alt.Y("class:N", sort=list(data["class"]), title=None, axis=alt.Axis(labelLimit=160)),
        tooltip=["class", alt.Tooltip("probability:Q", format=".1%")],
    )
    bars = base.mark_bar().encode(color=alt.condition(alt.datum.probability >= (threshold if familiar else 2),
                                                      alt.value(SURE_COLOUR), alt.value(UNSURE_COLOUR)))
    labels = base.mark_text(align="left", dx=4).encode(text=alt.Text("probability:Q", format=".0%"))
    line = alt.Chart(pd.DataFrame({"bar": [threshold]})).mark_rule(color=LINE_COLOUR, strokeDash=[4, 3]).encode(
        x="bar:Q")
    return (bars + labels + line).properties(height=34 * len(data) + 40)


def photo_details(name: str, data: bytes, prediction: Prediction, bar: Bar, run_dir: str, heat_ready: bool) -> None:
    """The photo, the model's top classes and verdict, and where it looked (once its LiteRT files are made)."""
    photo, guess, heat = st.columns([1, 1.3, 1], gap="medium")
    photo.image(preview(data), caption=name, width="stretch")
    with guess:
        show_verdict(prediction, bar)
        st.altair_chart(probability_chart(prediction, bar.sure, bar.verdict(prediction) != UNFAMILIAR),
                        width="stretch")
        st.caption("Its top guesses. The dashed red line is your “sure” bar; green bars clear it.")
    if not heat_ready:  # made once per network (or fine-tuned run) by the worker, seconds after training
        heat.info("Getting the heat map of where it looked ready (a few seconds, once per network)…", icon="⏳")
        return
    try:
        heat_jpeg, unseen = heat_map(run_dir, data)
    except RunFolderInvalid as exc:
        heat.warning(f"No heat map: {ui.md(exc)}")
        return
    heat.image(heat_jpeg, caption=heat_caption(unseen), width="stretch")
    heat.caption(f"The glow marks the parts of the photo that made the model say **{ui.md(prediction.label)}**; "
                 "bright yellow counts most. If it sits on the background rather than the subject, the model "
                 "may have learned a shortcut.")


def photo_inputs() -> tuple[list[tuple[str, bytes]], bool]:
    """Uploaded files and this session's webcam shots, the newest first and each photo once (telling the user
    about copies); and whether the live webcam is wanted."""
    left, right = st.columns([2, 1], gap="large")
    files = left.file_uploader("Photos to try", accept_multiple_files=True, key="predict_uploads",
                               help="JPEG, PNG, WebP, GIF, BMP or TIFF. Use photos the model has not seen in "
                                    "training: that is the honest test.")
    shots: list[tuple[str, bytes]] = st.session_state.setdefault("predict_shots", [])
    with right:
        live = webcam_choice(shots)
    arrivals: Arrivals = st.session_state.setdefault("predict_arrivals", Arrivals())
    photos, copies = arrivals.arrange([(f.name, f.getvalue()) for f in files or []] + shots)
    if copies:
        st.info("Already in the list, so shown once:\n"
                + "\n".join(f"- **{ui.md(copy)}** " + ("(added again)" if copy == original else
                                                        f"(the same photo as **{ui.md(original)}**)")
                             for copy, original in copies))
    return photos, live


def webcam_choice(shots: list[tuple[str, bytes]]) -> bool:
    """The webcam switch and mode; a new still photo joins `shots`. True when the live webcam is wanted."""
    if st.toggle("Use the webcam", key="predict_camera_on", help="Show the model this computer's camera."):
        # The browser only asks for the camera once this is on, not on every visit to the page.
        mode = st.segmented_control("Webcam", WEBCAM_MODES, default=WEBCAM_MODES[0], key="predict_camera_mode",
                                    label_visibility="collapsed",
                                    help="Live: the model's guesses follow the camera picture. "
                                         "Still photo: one shot at a time, with a heat map.")
        if mode == WEBCAM_MODES[0]:
            return True
        shot = st.camera_input("Webcam photo", key="predict_camera", label_visibility="collapsed")
        st.caption("Each shot joins the photos below, newest first. **Clear photo** takes another.")
        # The widget holds only its last shot, through every rerun: a shot is new when its upload id is.
        if shot is not None and shot.file_id != st.session_state.get("predict_last_shot"):
            st.session_state["predict_last_shot"] = shot.file_id
            st.session_state["predict_shot_count"] = st.session_state.get("predict_shot_count", 0) + 1
            shots.append((f"webcam photo {st.session_state['predict_shot_count']}", shot.getvalue()))
    if shots:
        st.button(f"Remove {ui.plural(len(shots), 'webcam photo')}", key="predict_forget_shots",
                  icon=":material/delete:", on_click=shots.clear,
                  help="Take this session's webcam shots off the list below.")
    return False


def unreadable(data: bytes) -> str | None:
    """Why a photo cannot be used, or None when it can."""
    try:
        preview(data)
    except ImageRejected as exc:
        return str(exc)
    return None


def summary(names: list[str], outcomes: list[Prediction | str], bar: Bar) -> None:
    """A table of every photo's verdict, downloadable as CSV."""
    table = pd.DataFrame(summary_rows(names, outcomes, bar))
    sure, unsure, strange = ((table["verdict"] == said).sum() for said in (SURE, NOT_SURE, UNFAMILIAR))
    unread = len(table) - sure - unsure - strange
    parts = [f"sure about **{sure}**", f"not sure about **{unsure}**"]
    parts += [f"**{strange}** unlike any of your classes"] if strange else []
    parts += [f"could not read **{unread}**"] if unread else []
    st.subheader("Summary")
    st.markdown(f"**{len(table)} photos** — " + ", ".join(parts) + ". Most often: "
                + ", ".join(f"**{ui.md(label)}** ({n})" for label, n in table["prediction"].value_counts().items()))
    st.dataframe(table.assign(confidence=table["confidence"] * 100), hide_index=True, key="predict_table",
                 column_config={
                     "file": st.column_config.TextColumn("Photo"),
                     "prediction": st.column_config.TextColumn("Looks like"),
                     "confidence": st.column_config.ProgressColumn("How sure", format="%.0f%%", min_value=0,
                                                                   max_value=100),
                     "verdict": st.column_config.TextColumn("Verdict"),
                 })
    st.download_button("Download table (CSV)", table.to_csv(index=False).encode("utf-8"), "predictions.csv",
                       "text/csv", key="predict_csv", icon="⬇️")


def details(photos: list[tuple[str, bytes]], predictions: list[Prediction], bar: Bar, run_dir: str,
            heat_ready: bool) -> None:
    """One expander per photo, a page at a time."""
    st.subheader("Photo by photo")
    pages = math.ceil(len(photos) / PER_PAGE)
    page = st.pagination(pages, key=f"predict_page_{pages}") if pages > 1 else 1
    start = (page - 1) * PER_PAGE
    for i, ((name, data), prediction) in enumerate(zip(photos[start:start + PER_PAGE],
                                                        predictions[start:start + PER_PAGE])):
        said = bar.verdict(prediction)
        icon = {SURE: "✅", NOT_SURE: "❓", UNFAMILIAR: "🚫"}[said]
        guess = (f"unlike your classes (closest: {ui.md(prediction.label)})" if said == UNFAMILIAR else
                 f"{ui.md(prediction.label)} ({ui.percent_beside(prediction.confidence, bar.sure)})")
        # keyed by content, so a photo stays open or closed as the user left it when newer ones push it down
        with st.expander(f"{ui.md(name)} — {guess}", expanded=i < OPEN_DETAILS, icon=icon,
                         key=f"predict_photo_{sha256_hex(data)[:16]}"):
            photo_details(name, data, prediction, bar, run_dir, heat_ready)


st.title("🔮 Try your model")
st.markdown("Show your model photos it has never seen — your own files or a webcam shot — and see what it "
            "thinks they are, how sure it is, and which part of the photo it looked at.")

project = ui.require_project()
runs = finished_runs(project)
if not runs:
    ui.missing("Train a model first: once a training run has finished, you can try it on new photos here.",
               "train", "Go to training", icon="🏋️")

model_column, threshold_column = st.columns([3, 2], gap="large")
by_id = {r.id: r for r in runs}
run = by_id[model_column.selectbox(
    "Model", list(by_id), format_func=lambda i: ui.run_label(by_id[i]), key="predict_run",
    help="Each finished training run left a model, named by when it started, its network, what it retrained "
         "and how many of its validation photos it named right. The newest one is picked for you.")]
threshold = threshold_column.slider(
    "Say “not sure” below", 0, 100, 60, step=5, format="%d%%", key="predict_threshold",
    help="When the model's best guess is less sure than this, the page says “Not sure” instead of a class. "
         "Raise it when a wrong answer is costly.") / 100
bar = Bar(threshold, novelty_bar(run.dir, threshold_column))
classes = run.summary.get("classes") or []
if classes:
    model_column.caption("This model knows: " + ", ".join(f"**{ui.md(c)}**" for c in classes))

photos, live = photo_inputs()
if live:
    with st.container(border=True):
        try:
            webcam.live_verdicts(run.dir, bar, show_verdict)
        except NotConverted:
            ui.await_conversion(project, run, CONVERTING)
        except RunFolderInvalid as exc:  # a damaged or foreign model file
            st.error(f"The model of run {run.id} could not be loaded: {ui.md(exc)} Pick another run above.")
problems = {i: reason for i, (_, data) in enumerate(photos) if (reason := unreadable(data))}
if problems:
    st.error("These files could not be used (the others are fine):\n"
             + "\n".join(f"- **{ui.md(photos[i][0])}**: {ui.md(reason)}" for i, reason in problems.items())
             + "\n\nUpload a photo file such as JPEG or PNG instead.")
if not photos and not live:
    st.info("👆 Upload one or more photos, or switch on the webcam, to see what the model makes of them.")
good = [photo for i, photo in enumerate(photos) if i not in problems]
if not good:
    st.stop()

run_dir = str(run.dir)
try:
    predictions = predict(run_dir, tuple(data for _, data in good), TOP_K)
except NotConverted:
    ui.await_conversion(project, run, CONVERTING)
    st.stop()
except RunFolderInvalid as exc:  # a damaged or foreign model file
    st.error(f"The model of run {run.id} could not be loaded: {ui.md(exc)} Pick another run above, or train again.")
    st.stop()
heat_ready = jobs.heat_map_ready(project, run)  # the worker is asked for them when they are not there
if len(photos) == 1:
    photo_details(*good[0], predictions[0], bar, run_dir, heat_ready)
else:
    found = iter(predictions)
    outcomes = [problems[i] if i in problems else next(found) for i in range(len(photos))]
    summary([name for name, _ in photos], outcomes, bar)
    details(good, predictions, bar, run_dir, heat_ready)
if not heat_ready:
    ui.rerun_when_converted(project, run)

st.divider()
st.page_link(ui.PAGES["results"], label="See how this model did on its validation photos, and download it",
             icon="📊")
