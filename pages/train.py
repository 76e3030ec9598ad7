"""Train page: pick a pretrained network and how much of it to retrain, start a run, watch it learn live.

Training is a background job (`core.jobs.server`): this page starts it, asks it to stop and reads its
progress back from the project store. Leaving the page, refreshing or closing the tab never
touches the run, and coming back finds it again (the active run, else the latest one).
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import streamlit as st

from core.model import api as model
from core.jobs import api as jobs
from core.jobs.api import Busy, has_model
from core.model.api import (DEFAULT_BACKBONE, OFFERED, RECOMMENDED, REGISTRY, STAGE_EMBED, STAGE_FINETUNE,
                            STAGE_HEAD, STRENGTHS, BackboneSpec, TrainConfig, backbone_label, freeze_options,
                            get_backbone)
from core.store.api import Project, RunRecord
from pages import charts, ui

DEFAULTS = dataclasses.replace(TrainConfig(), backbone=DEFAULT_BACKBONE)
CHOICES = [*REGISTRY, *OFFERED]  # the networks, then offline ones joined (head only)
FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "augment"]  # a widget each
FINETUNE_RATES = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3]
BATCH_SIZES = [8, 16, 32, 64, 128]
AUGMENTATIONS = {  # TrainConfig.augment's flags, a checkbox each
    "flip": "Mirror left–right",
    "rotation": "Rotate a little",
    "zoom": "Zoom in and out",
    "contrast": "Change contrast",
}
STAGE_TEXT = {  # stage -> (what it is called, what happens in it)
    STAGE_EMBED: ("Looking at your photos",
                  ("The pretrained network turns each photo into a list of numbers that describe it. "
                   "This happens once per photo; the next run reuses them.")),
    STAGE_HEAD: ("Fitting the new head",
                 (f"A small new layer learns which of those numbers point to which of your classes. It is solved "
                  f"directly, at up to {len(STRENGTHS)} strengths of regularisation (how simple it is kept), from the "
                  "simplest, until the score on training photos held out in turn gets worse; the best one is kept.")),
    STAGE_FINETUNE: ("Fine-tuning the network",
                     ("The last blocks of the pretrained network are adjusted to your photos, their mirror images "
                      "and zoomed-in views (deep retraining adds small random rotations, contrast…), so that it "
                      "learns the subject rather than the exact pictures.")),
}
STARTING = ("Handing the run to the training process",
            "The first run after the app starts waits a few seconds for the deep-learning library to load.")
LIVE_SECONDS = 1
NAMES_SHOWN = 12  # class names listed in "Your photos"; past that, how many more


def key(field: str) -> str:
    """Widget key of a TrainConfig field."""
    return f"train_{field}"


def augment_key(flag: str) -> str:
    """Widget key of an augmentation flag."""
    return key(f"augment_{flag}")


def init_settings(project: Project) -> None:
    """Defaults on the first visit (the project's backbone, if it has one); afterwards keep the person's choices
    when they visit other pages."""
    defaults = {key(field): getattr(DEFAULTS, field) for field in FIELDS}
    defaults |= {augment_key(flag): getattr(DEFAULTS.augment, flag) for flag in AUGMENTATIONS}
    for name, default in defaults.items():
        st.session_state[name] = st.session_state.get(name, default)
    if project.backbone in CHOICES and st.session_state.get("train_backbone_project") != project.name:
        st.session_state[key("backbone")] = project.backbone
    st.session_state["train_backbone_project"] = project.name


def backbone_chosen(project: Project) -> None:
    """Remember the backbone for the project, so its photos are embedded with it before Train is clicked."""
    project.set_backbone(st.session_state[key("backbone")])
    jobs.prepare(project)


def settings() -> TrainConfig:
    return TrainConfig(**{field: st.session_state[key(field)] for field in FIELDS},
                       augment=dataclasses.replace(DEFAULTS.augment,
                                                   **{f: st.session_state[augment_key(f)] for f in AUGMENTATIONS}))


def depth_label(blocks: int) -> str:
    return "only the new head" if blocks == 0 else f"the last {ui.plural(blocks, 'block')} + the head"


def depth_short(blocks: int) -> str:
    return "head only" if blocks == 0 else f"last {blocks}"


# ---- the photos -----------------------------------------------------------------------------------


def sync_val_share(project: Project) -> None:
    project.set_val_share(st.session_state["train_val_share"] / 100)


def photos_section(project: Project) -> bool:
    """What the model will learn from, and the validation share; False when it cannot train yet."""
    classes = [c for c in project.classes() if c.kept > 0]
    train, val = sum(c.train for c in classes), sum(c.val for c in classes)
    st.subheader("Your photos")
    if len(classes) < 2:
        st.warning("Training needs at least **two classes with photos** — it learns to tell them apart. "
                   f"This project has {ui.plural(len(classes), 'class')} with photos.")
        st.page_link(ui.PAGES["collect"], label="Collect photos", icon="📷")
        st.page_link(ui.PAGES["review"], label="Review the dataset", icon="🧹")
        return False
    named = ", ".join(ui.md(c.name) for c in classes[:NAMES_SHOWN]) + (
        f" and {len(classes) - NAMES_SHOWN:,} more" if len(classes) > NAMES_SHOWN else "")  # 100 names are no line
    st.markdown(f"**{ui.plural(len(classes), 'class')}** ({named}) · "
                f"**{ui.plural(train + val, 'photo')}**: {train:,} to learn from, {val:,} held back to check the model.")
    thin = [c.name for c in classes if c.kept < ui.MIN_PHOTOS_PER_CLASS]
    if thin:
        st.caption(f"⚠️ Few photos in {', '.join(map(ui.md, thin))}. {ui.photo_advice()}")
    st.session_state["train_val_share"] = round(project.val_share * 100)
    st.slider("Photos held back to check the model", 5, 50, step=5, format="%d%%", key="train_val_share",
              on_change=sync_val_share, args=(project,),
              help="Validation photos are never trained on, so the score on them is an honest preview of new photos.")
    st.caption("These *validation* photos are never learned from: the score on them tells how the model will do "
               "on photos it has never seen. Each photo keeps its place when you add more.")
    ui.readiness_line(project)
    return True


# ---- the settings ---------------------------------------------------------------------------------


def speed_text(name: str, measured: dict[str, dict], relative: dict[str, float]) -> str:
    if name not in measured:
        return "not measured yet"
    pace = "fastest" if relative[name] < 1.05 else f"{relative[name]:.1f}× slower"
    return f"{pace}, {measured[name]['ms_per_photo']:.0f} ms"


def availability(spec: BackboneSpec) -> str:
    if spec.offline:
        return "✅ works offline"
    return "✅ downloaded already" if spec.weights_cached() else "🌐 needs a download (internet)"


def backbone_table() -> pd.DataFrame:
    """One row per backbone, joined ones last: what a person weighs when choosing one (a joined one's speed is its
    members' together)."""
    measured = model.cached_speeds()
    for name in OFFERED:
        members = get_backbone(name).members
        if all(m.name in measured for m in members):
            measured[name] = {"ms_per_photo": sum(measured[m.name]["ms_per_photo"] for m in members)}
    relative = model.relative_speeds(measured)
    return pd.DataFrame([{
        "Network": spec.label,
        "Photo size": " + ".join(f"{m.input_size}" for m in spec.members) + " px",
        "Parameters": f"{spec.params / 1e6:.1f} M",
        "Available": availability(spec),
        "Speed here": speed_text(spec.name, measured, relative),
    } for spec in map(get_backbone, CHOICES)])


def start_measuring(names: list[str]) -> None:
    """Button callback: time the networks in the background (a finished timing's report is dropped first)."""
    model.forget_measuring()
    try:
        model.start_measuring([REGISTRY[name] for name in names])
    except Busy as exc:  # another tab started one a moment ago: this page shows that one
        st.session_state["speed_busy"] = str(exc)


def measuring_view(timing: bool, timed: int) -> None:
    """The timing in progress (polled while it runs), then what could not be timed or why it stopped; `timed`:
    how many networks were done when the page was drawn."""
    task = model.measuring()
    view = task.view() if task else None
    if timing and not (view and view.running and view.done == timed):
        st.rerun()  # a network was timed, or the timing ended: redraw the page, its tables have the new figures
    if view is None:
        return
    if view.running:
        ui.task_progress(task, view, stop_key="stop_measuring", stop="Stop timing",
                         stopping="Stopping after the network being timed…",
                         stop_help="The networks timed so far keep their figures.",
                         note="You can leave this page: the timing goes on, and the table shows each figure once "
                              "it is done.")
        return
    if view.cancelled:
        st.info("Timing stopped; the networks timed before that keep their figures.", icon="⏹️")
    elif view.error:
        st.error(view.error)
    for label, why in (view.result or {}).items():
        st.warning(f"{label} could not be timed: {why}")


def choice_label(name: str) -> str:
    if name == DEFAULT_BACKBONE:
        return f"{backbone_label(name)} (recommended)"
    return f"{backbone_label(name)} (recommended joined)" if name == RECOMMENDED else backbone_label(name)


def backbone_picker(project: Project, busy: bool) -> BackboneSpec:
    names = list(REGISTRY)
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
    table = backbone_table()
    st.dataframe(table, hide_index=True, key="backbone_table", column_config={
        "Photo size": st.column_config.TextColumn(width="small", help="Photos are resized to this before the network "
                                                  "sees them."),
        "Parameters": st.column_config.TextColumn(width="small", help="Numbers inside the network: its size."),
    })
    unmeasured = [n for n in names if n not in model.cached_speeds()]
    task = model.measuring()
    view = task.view() if task else None
    timing = view is not None and view.running
    st.button("⏱️ Measure speed on this computer" if unmeasured else "⏱️ Measure speed again",
              key="measure_speed", disabled=busy or timing, on_click=start_measuring, args=(unmeasured or names,),
              help="Stop the training run first: it would slow the timing down." if busy else
              "Times each network on random pixels, here, so you can weigh speed against size.")
    if busy_message := st.session_state.pop("speed_busy", None):
        st.info(busy_message, icon="⏳")
    st.fragment(run_every=LIVE_SECONDS if timing else None)(measuring_view)(timing, view.done if view else 0)
    st.caption("Speed: milliseconds the network takes to look at one photo on this computer; training time grows "
               "with it." + (" Timing every network takes a few minutes." if unmeasured else ""))
    return spec


def depth_picker(spec: BackboneSpec, n_classes: int) -> int:
    if len(spec.members) > 1:
        return joined_depth(spec, n_classes)
    options = freeze_options(spec.name)
    most = len(options) - 1
    st.session_state[key("unfreeze_blocks")] = min(st.session_state[key("unfreeze_blocks")], most)
    blocks = st.select_slider(
        "How much of the network to retrain", options=list(range(most + 1)), key=key("unfreeze_blocks"),
        format_func=depth_short,
        help=f"{spec.label} is made of {most} blocks, from simple edges and colours at the start to whole "
             "objects at the end. Retraining the last ones adapts them to your photos.")
    head_params = spec.feature_dim * n_classes + n_classes
    layers, params = options[blocks]
    trainable = f"1 layer, {head_params:,} parameters" if blocks == 0 else \
        f"{layers + 1} layers, {params + head_params:,} of {spec.params + head_params:,} parameters"
    st.markdown(f"Training will change **{depth_label(blocks)}**: {trainable}.")
    st.caption("Fast (seconds to a minute): the pretrained network stays as it is. The best start, especially "
               "with few photos." if blocks == 0 else
               "Slower: each photo first goes once through the part that stays frozen (kept for the next run), then "
               "the retrained blocks learn from that. Can help with 100+ photos per class or unusual pictures; when "
               "it does not beat the head alone on validation photos, the run keeps the head.")
    return blocks


def joined_depth(spec: BackboneSpec, n_classes: int) -> int:
    """Joined networks train the new head only: no depth to choose, and the page says so."""
    st.session_state[key("unfreeze_blocks")] = 0
    head_params = spec.feature_dim * n_classes + n_classes
    st.markdown(f"Training will change **{depth_label(0)}**: 1 layer, {head_params:,} parameters.")
    every = "both" if len(spec.members) == 2 else f"all {len(spec.members)}"
    st.caption(f"{spec.label} trains only the new head, on what {every} networks see: retraining their blocks is "
               "not offered (choose a single network for that).")
    return 0


def explained(widget, explanation: str, *args, **kwargs):
    """A settings widget with its one-line plain explanation under it."""
    value = widget(*args, **kwargs)
    st.caption(explanation)
    return value


def advice_view(photos: int, last_run: dict | None) -> None:
    """Expected time of a first run on this computer and measured accuracy gain, per offline network and depth;
    whether the last run's photos look unlike everyday ones."""
    rows = model.advice(photos, model.cached_speeds())
    sign = model.unlike_everyday(last_run or {})
    if sign:
        st.info(f"Your photos look unlike everyday photos ({sign}), so fine-tuning is likely to help: try retraining "
                "the last 2 blocks.", icon="💡")
    cell = lambda r: f"~{ui.duration(r.seconds)}" + ("" if r.gain is None else f" · {gain_text(r)}")  # noqa: E731
    networks = list(dict.fromkeys(r.backbone for r in rows))
    table = pd.DataFrame([{"Retrain": depth_short(blocks), **{backbone_label(r.backbone): cell(r) for r in rows
                                                               if r.blocks == blocks}}
                          for blocks in model.DEPTHS], columns=["Retrain", *map(backbone_label, networks)])
    with st.expander(f"Which network and depth? Expected time for {ui.plural(photos, 'photo')}, and measured gain"):
        st.dataframe(table, hide_index=True)
        untimed = not all(r.timed_here for r in rows)
        st.caption("Time of a first run here (later runs reuse what was computed)"
                   + (", estimated from a reference laptop until the speeds are measured above" if untimed else "")
                   + ". Gain: validation-accuracy points over EfficientNet-Lite0's head alone, where measured: on "
                   "everyday photos (flowers, ants vs bees) and on photos unlike them (grocery-shelf photos, tiny "
                   "32-pixel flower photos). When retraining does not beat the head on your validation photos, "
                   "the run keeps the head: try the head alone first, it takes seconds.")


def costs_view(photos: int, classes: int, chosen: str) -> None:
    """What the joined networks gain over Lite0 alone and what they cost (preparing this project's photos, Try it,
    the live webcam's rate, the model's size), and whether they pay on a project like this one."""
    rows = model.costs(photos, model.cached_speeds())
    measures = {
        **{f"Gain: {name}": (lambda r, i=i: gain_cell(r, i)) for i, (name, _) in enumerate(model.MEASURED_SETS)},
        f"Preparing {ui.plural(photos, 'photo')}": lambda r: f"~{ui.duration(r.prepare_seconds)}",
        "Try it, per photo": lambda r: "—" if r.try_ms is None else f"~{r.try_ms:.0f} ms",
        "Live webcam, pictures a second": lambda r: "—" if r.live_fps is None else f"~{r.live_fps:.0f}",
        "Model size": lambda r: f"{r.size_mb:.0f} MB",
    }
    # one column per choice, so that every cost is in sight beside the gains
    table = pd.DataFrame([{"": measure, **{short_label(r.backbone): cell(r) for r in rows}}
                          for measure, cell in measures.items()])
    alike = model.most_alike(classes)
    best = rows[1]  # the joined choice recommended first
    with st.expander("Joined networks: what they gain and what they cost", expanded=chosen in OFFERED):
        st.dataframe(table, hide_index=True, key="joined_costs")
        if best.gains is not None:
            name, measured_classes = model.MEASURED_SETS[alike]
            gain = best.gains[alike]
            st.markdown(f"On the photo set most like yours ({name}, {measured_classes} classes) "
                        f"**{backbone_label(best.backbone)}** named {abs(gain):.1f} "
                        f"{'more' if gain >= 0 else 'fewer'} photos in 100 right than EfficientNet-Lite0 alone. " + (
                            "It pays most with many classes that look alike." if gain >= 2 else
                            "With few, everyday classes the gain is small: Lite0 alone is faster and nearly as good."
                            if gain >= 0 else "Lite0 alone did better there, and it is faster."))
        untimed = not all(r.timed_here for r in rows)
        st.caption("Gain: accuracy points on validation photos over EfficientNet-Lite0 alone, head only, the mean "
                   "of three splits of each photo set. Preparing: looking at every photo once per network, in the "
                   "background as photos arrive"
                   + (" (estimated from a reference laptop until the speeds are measured above)" if untimed else "")
                   + ". Try it and the live webcam: measured on a 2-core laptop-class computer; every network of a "
                   "joined choice looks at each picture, so they take longer.")
    if chosen in OFFERED:
        cost, reference = next(r for r in rows if r.backbone == chosen), rows[0]
        if cost.live_fps is not None and reference.live_fps is not None:
            st.caption(f"🎥 With {backbone_label(chosen)} the live webcam shows about {cost.live_fps:.0f} pictures a "
                       f"second (EfficientNet-Lite0 alone: about {reference.live_fps:.0f}).")


def short_label(name: str) -> str:
    """'Lite0 + Lite2': a network's name without the family, for narrow columns."""
    return " + ".join(m.label.removeprefix("EfficientNet-") for m in get_backbone(name).members)


def gain_cell(row: model.Cost, index: int) -> str:
    if row.backbone == DEFAULT_BACKBONE:
        return "the reference"
    return "not measured" if row.gains is None else f"{row.gains[index]:+.1f} pts"


def gain_text(row: model.Advice) -> str:
    if (row.backbone, row.blocks) == (DEFAULT_BACKBONE, 0):
        return "the reference"
    points = lambda gain: "no gain" if abs(gain) < 0.05 else f"{gain:+.1f} pts"  # noqa: E731
    everyday = f"everyday photos {points(row.gain)}"
    return everyday if row.gain_unlike is None else f"{everyday}, unlike them {points(row.gain_unlike)}"


def main_settings(fine_tuning: bool) -> None:
    explained(st.number_input, "One epoch = one pass over every training photo through the network. Used only when "
              "part of the network is retrained (slider above); it stops by itself once the validation photos stop "
              "improving. The new head needs no setting: it is solved directly.",
              "Epochs for fine-tuning (at most)", 1, 100, key=key("finetune_epochs"), disabled=not fine_tuning)


def advanced_settings(fine_tuning: bool) -> None:
    with st.expander("Advanced settings", icon="⚙️"):
        st.caption("All but the seed and the mirroring apply to fine-tuning only, when part of the network is "
                   "retrained.")
        left, middle, right = st.columns(3, gap="large")
        with left:
            explained(st.select_slider, "How big each learning step is: small, so the pretrained knowledge is not "
                      "wiped out.", "Learning rate (fine-tuning)", FINETUNE_RATES, key=key("finetune_learning_rate"),
                      format_func=lambda v: f"{v:g}", disabled=not fine_tuning)
            explained(st.select_slider, "Photos looked at before each learning step. Bigger is smoother, "
                      "uses more memory.", "Batch size", BATCH_SIZES, key=key("batch_size"), disabled=not fine_tuning)
        with middle:
            explained(st.number_input, "Epochs to wait for the validation score to beat the best so far (the new "
                      "head's, to begin with) before stopping.",
                      "Patience (epochs)", 1, 50, key=key("patience"), disabled=not fine_tuning)
            explained(st.number_input, "Same number, same result: change it to see how much luck is involved.",
                      "Random seed", 0, 10_000, key=key("seed"))
        with right:
            explained(st.slider, "Randomly ignores part of what the network sees while training, so the head "
                      "does not lean on a few details.", "Dropout", 0.0, 0.7, step=0.05, key=key("dropout"),
                      disabled=not fine_tuning)
            explained(st.slider, "Keeps the model from being 100% sure, which helps when a few labels are wrong.",
                      "Label smoothing", 0.0, 0.3, step=0.05, key=key("label_smoothing"), disabled=not fine_tuning)
        st.markdown("**Random changes to photos** (augmentation; the head learns from mirrored copies too)")
        columns = st.columns(len(AUGMENTATIONS))
        for column, (flag, label) in zip(columns, AUGMENTATIONS.items()):
            column.checkbox(label, key=augment_key(flag), disabled=not fine_tuning and flag != "flip")
        st.caption("Shows the network slightly different versions of each photo, so it learns the subject, not "
                   "the exact picture. Mirroring also teaches the new head (from mirrored copies summarised once); "
                   "the others are used only while fine-tuning.")


def start(project: Project) -> None:
    """The Train button's callback: it runs before the page is drawn again, so the worker has the run and a toast
    says so at once (a whole page drawn first cost ~1.7 s of nothing happening); why it could not start is kept
    for `start_refused` to show at the button."""
    try:
        run_id = jobs.start_training(project, settings())
    except jobs.JobRefused as exc:
        st.session_state["train_refused"] = ("busy", str(exc))
    except ValueError as exc:
        st.session_state["train_refused"] = ("photos", str(exc))
    except RuntimeError as exc:  # the training process could not be started
        st.session_state["train_refused"] = ("failed", str(exc))
    else:
        st.toast(f"Training started{f' (run {run_id})' if isinstance(run_id, int) else ''}.", icon="🏋️")


def start_refused() -> None:
    """Say plainly, at the button, why the last click could not start a run."""
    kind, text = st.session_state.pop("train_refused", (None, ""))
    if kind == "busy":
        st.error(ui.md(text), icon="⏳")
    elif kind == "photos":
        st.error(f"The photos are not ready for training yet: {ui.md(text)} Add photos on Collect, or check on "
                 "Review that every class has kept photos.", icon="📷")
        st.page_link(ui.PAGES["collect"], label="Collect photos", icon="📷")
        st.page_link(ui.PAGES["review"], label="Review the dataset", icon="🧹")
    elif kind == "failed":
        st.error(f"Training could not start: {ui.md(text)}", icon="❌")


# ---- the run --------------------------------------------------------------------------------------


def stages_line(run: RunRecord, current: str | None) -> str:
    """The steps of this run with the one in progress marked: ✅ done, ⏳ now, ⚪ to come."""
    planned = [STAGE_EMBED, STAGE_HEAD] + ([STAGE_FINETUNE] if run.config.get("unfreeze_blocks") else [])
    now = planned.index(current) if current in planned else -1
    marks = ["✅" if i < now else "⏳" if i == now else "⚪" for i in range(len(planned))]
    return " → ".join(f"{mark} {i + 1}. {STAGE_TEXT[stage][0]}" for i, (mark, stage) in enumerate(zip(marks, planned)))


def time_left_text(progress: dict) -> str:
    """' · about 2 min left in this step', counting down between the worker's reports; once the estimate has run
    out, the step is finishing what it does not count (checking the last epoch, saving), not '1 s left' for long."""
    left = jobs.time_left(progress)
    if left is None:
        return ""
    if left < 2:
        return " · finishing this step…"
    # fine-tuning may stop early, when the validation photos stop improving: its estimate is the longest it takes
    bound = "at most about" if progress.get("stage") == STAGE_FINETUNE else "about"
    return f" · {bound} {ui.duration(left)} left in this step"


def progress_text(progress: dict) -> str:
    stage, left = progress.get("stage"), time_left_text(progress)
    if stage is None:
        return "Waiting for the training process…"
    if stage == STAGE_EMBED and not progress.get("batches"):
        return "Getting the network ready (the first run with a network prepares it: up to a minute)…"
    if stage == STAGE_EMBED:
        return f"{progress['batch']:,} of {progress['batches']:,} photos{left}"
    if stage == STAGE_HEAD:
        return f"Regularisation strength {max(1, progress.get('epoch', 0))} of {progress.get('epochs', 0)}"
    return f"Epoch {max(1, progress.get('epoch', 0))} of at most {progress.get('epochs', 0)}{left}"


def batch_text(progress: dict) -> str:
    """The latest batch, or else the latest finished epoch, in a line."""
    logs, batches = progress.get("logs") or {}, progress.get("batches")
    if progress.get("stage") in (None, STAGE_EMBED):
        return "Photos are read from disk and looked at in small batches."
    if progress.get("stage") == STAGE_HEAD:
        return "Each strength is scored on training photos held out in turn; the validation photos only watch."
    if batches and "accuracy" in logs:
        return (f"Batch {progress.get('batch', 0)} of {batches} · loss {logs.get('loss', 0):.3f} · right on "
                f"{ui.percent(logs['accuracy'])} of training photos so far this epoch")
    if "val_accuracy" in logs:
        return (f"Last epoch: right on {ui.percent(logs.get('accuracy', 0))} of training photos and "
                f"{ui.percent(logs['val_accuracy'])} of validation photos")
    return "Waiting for the first batch…"


def live_view(project: Project, run: RunRecord) -> None:
    # The same elements in the same order on every refresh, so that nothing jumps while the numbers change.
    progress = run.progress
    stage = progress.get("stage") if run.status == "running" else None
    st.markdown(stages_line(run, stage))
    title, explanation = STAGE_TEXT.get(stage, STARTING)
    st.markdown(f"**Now: {title.lower()}.** {explanation}")
    st.progress(min(1.0, progress.get("fraction", 0.0)) if stage else 0.0, text=progress_text(progress if stage else {}))
    st.caption(batch_text(progress if stage else {}))
    if run.stop_requested:
        st.info("Stopping after the current batch… The best model so far is kept.", icon="⏹️")
    else:
        st.button("⏹️ Stop training", key="stop_run", on_click=jobs.stop, args=(project, run.id),
                  help="Ends the run cleanly after the current batch and keeps the best model found so far.")
    st.caption("You can leave this page or close the tab: training goes on, and this page shows it when you return.")


def accuracy_sentence(summary: dict) -> str:
    accuracy, n = summary.get("val_accuracy"), summary.get("val_images") or 0
    if accuracy is None or not n:
        return ("There were no validation photos to check it on, so there is no honest score: raise the share "
                "of photos held back and train again.")
    classes = len(summary.get("classes") or []) or 2
    sentence = (f"On **{ui.plural(n, 'validation photo')}** it had never seen, the model named the right class for "
                f"**{round(accuracy * n)}** — **{ui.percent(accuracy)}** (guessing would get about "
                f"{ui.percent(1 / classes)}).")
    if n < 20:
        sentence += " With so few validation photos this figure is rough."
    return sentence


def head_sentence(summary: dict) -> str:
    """What the head search did, in a line."""
    tried, strength, folds = summary.get("head_strengths_tried"), summary.get("head_C"), summary.get("head_cv_folds")
    if not tried:
        return ""
    if not folds:
        return (f"The new head was solved at one regularisation strength (C={strength:.3g}): too few photos per class "
                "to compare strengths fairly.")
    return (f"The new head tried {tried} strengths of regularisation and picked C={strength:.3g}, the one that named "
            f"held-out training photos best ({folds}-fold cross-validation; validation photos were not used to pick).")


def downloads_line(project: Project, run: RunRecord) -> None:
    """Whether the files to take away are ready, and keep looking while they are being made."""
    state = jobs.downloads(project, run)
    if state == "ready":
        st.caption("⬇️ Downloads ready: .keras and TFLite files on the Results page.")
    elif state == "failed":
        st.warning("The downloadable files could not be made; the model works here all the same.", icon="⚠️")
        st.button("Try making the downloads again", key="retry_downloads", on_click=jobs.retry_downloads,
                  args=(project, run))
    else:
        st.caption("⏳ Preparing downloads… (.keras and TFLite files; you can already try the model)")


def finetune_won_sentence(summary: dict, rows: list[dict]) -> str:
    """Fine-tuning beat the head alone and its model was kept: say so, with both scores where they are known."""
    epochs = sum(row["stage"] == STAGE_FINETUNE for row in rows)
    head = next((row.get("val_accuracy") for row in rows if charts.is_strength(row) and summary.get("head_C")
                 is not None and math.isclose(row["C"], summary["head_C"])), None)
    scores = (f" ({ui.percent(head)} with the new head alone, {ui.percent(summary['val_accuracy'])} retrained)"
              if head is not None and summary.get("val_accuracy") is not None else "")
    return (f"Retraining the last {ui.plural(summary['unfreeze_blocks'], 'block')} of the network paid off: it beat "
            f"the new head alone on the validation photos{scores}, best after epoch {summary['best_epoch']} of "
            f"{epochs}. The retrained network is the model kept.")


def outcome_view(project: Project, run: RunRecord) -> None:
    if run.status == "failed":
        st.error(f"This run failed: {(run.error or 'no reason was recorded').splitlines()[0]}", icon="❌")
        with st.expander("Details (for a bug report)"):
            st.code(run.error or "")
        st.caption("Nothing you made is lost. Try again; if it fails again, check the photos on Review or pick "
                   "the recommended network.")
        return
    if not has_model(run):
        st.warning(f"{run.error or 'This run ended before a model was saved.'} Start a new run when you are ready.",
                   icon="⏹️")
        return
    stopped = "You stopped this run early; the best model so far was kept. " if run.status == "stopped" else ""
    st.success(f"{stopped}The model is ready, {ui.duration(run.summary.get('train_seconds', 0))} after training "
               f"started. {accuracy_sentence(run.summary)}", icon="🎉")
    if run.summary.get("finetune_kept_head"):
        st.info("Retraining the network did not beat the new head alone on the validation photos, so the head alone "
                "was kept: it is the better model for these photos.", icon="ℹ️")
    elif run.summary.get("unfreeze_blocks") and run.summary.get("best_epoch"):
        st.info(finetune_won_sentence(run.summary, project.epochs(run.id)), icon="🏆")
    downloads_line(project, run)
    rejected = run.summary.get("rejected") or {}
    if rejected:
        with st.expander(f"{ui.plural(len(rejected), 'photo')} could not be read and were left out", icon="⚠️"):
            st.markdown("\n".join(f"- {ui.md(path)}: {ui.md(why)}" for path, why in rejected.items()))
    st.page_link(ui.PAGES["results"], label="See where it goes wrong, and download the model", icon="📊")
    st.page_link(ui.PAGES["predict"], label="Try it on new photos", icon="🔮")


def curves(project: Project, run: RunRecord) -> None:
    rows = project.epochs(run.id)
    strengths = charts.strength_frame(rows, chosen=run.summary.get("head_C"))
    if not strengths.empty:
        left, right = st.columns([3, 2], gap="large")
        left.altair_chart(charts.panels([charts.strength_chart(strengths)]), width="stretch")
        right.markdown(head_sentence(run.summary) or "The new head is fitted at each regularisation strength in turn.")
        right.caption("No epochs here: the head is a small problem solved exactly at each strength. Strong "
                      "regularisation (left) keeps it simple; weak (right) lets it fit every training photo. Blue: "
                      "training photos, each judged by a head fitted without it. Orange: validation photos. The dotted line "
                      "marks the strength it kept.")
    epochs = charts.epoch_frame(rows)
    if epochs.empty:
        if run.status in jobs.ACTIVE and run.config.get("unfreeze_blocks"):
            st.caption("📈 The fine-tuning curves appear here after its first epoch.")
        return
    left, right = st.columns([3, 2], gap="large")
    left.altair_chart(charts.panels(charts.epoch_charts(epochs)), width="stretch")
    right.markdown("**Fine-tuning, epoch by epoch**")
    right.caption("Blue: training photos. Orange: validation photos, never trained on. When blue keeps improving "
                  "but orange gets worse, the model is learning the training photos by heart (overfitting); "
                  "training keeps the epoch where orange was best, and keeps the head alone when no epoch beat it.")


def preparing_downloads(project: Project, run: RunRecord) -> bool:
    return jobs.downloads(project, run) == "preparing"


def show_run(project: Project, run_id: int, live: bool, waiting_for_downloads: bool = False) -> None:
    """One run: live progress while it trains, its outcome afterwards, and its curves."""
    run = jobs.refresh(project, run_id)
    if live and run.status not in jobs.ACTIVE or waiting_for_downloads and not preparing_downloads(project, run):
        st.rerun()  # it just ended, or its downloads are ready: redraw the whole page (Train button, links)
    st.subheader(f"{'Training now' if live else 'Latest run'}: run {run.id}")
    st.caption(ui.run_label(run))
    if live:
        live_view(project, run)
    else:
        outcome_view(project, run)
    curves(project, run)


def how_it_works(first_time: bool) -> None:
    with st.expander("How training works", expanded=first_time, icon="💡"):
        st.markdown(
            f"1. **{STAGE_TEXT[STAGE_EMBED][0]}** — {STAGE_TEXT[STAGE_EMBED][1]}\n"
            f"2. **{STAGE_TEXT[STAGE_HEAD][0]}** — {STAGE_TEXT[STAGE_HEAD][1]}\n"
            f"3. *Optional:* **{STAGE_TEXT[STAGE_FINETUNE][0]}** — {STAGE_TEXT[STAGE_FINETUNE][1]}\n\n"
            "The defaults suit most projects: click **Train** and watch it learn.")


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
    with network:
        spec = backbone_picker(project, busy=active is not None)
        filled = [c for c in project.classes() if c.kept]  # one count of 50,000 photos, not three
        costs_view(sum(c.kept for c in filled), len(filled), spec.name)
        advice_view(sum(c.kept for c in filled), runs[0].summary if runs else None)
    with depth:
        blocks = depth_picker(spec, max(2, len(filled)))
        main_settings(fine_tuning=blocks > 0)
    advanced_settings(fine_tuning=blocks > 0)

    st.button("🏋️ Train", type="primary", key="train_start", disabled=not ready or active is not None,
                 help="A run is in progress: stop it or wait for it to finish." if active else
                 "Starts training in the background with the settings above.", on_click=start, args=(project,))
    start_refused()
    if active:
        st.caption(f"Run {active.id} is training: stop it or wait for it to finish before starting another.")
