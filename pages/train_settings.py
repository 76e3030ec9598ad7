"""The Train page's settings for the next run: widget keys and their defaults, the photos and validation share,
how much of the network to retrain, the advanced settings, and starting the run."""

from __future__ import annotations

import dataclasses

import streamlit as st

from core.jobs import api as jobs
from core.model.api import (DEFAULT_BACKBONE, OFFERED, REGISTRY, BackboneSpec, TrainConfig, automatic_epochs,
                            automatic_rate, freeze_options)
from core.store.api import Project
from pages import ui
from pages.train_text import depth_label, depth_short

DEFAULTS = dataclasses.replace(TrainConfig(), backbone=DEFAULT_BACKBONE)
CHOICES = [*REGISTRY, *OFFERED]  # the networks, then offline ones joined (head only)
FIELDS = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "augment"]  # a widget each
FINETUNE_RATES = [None, 1e-5, 3e-5, 1e-4, 3e-4, 1e-3]  # None: automatic, chosen for the training photo count
BATCH_SIZES = [8, 16, 32, 64, 128]
AUGMENTATIONS = {  # TrainConfig.augment's flags, a checkbox each
    "flip": "Mirror left–right",
    "rotation": "Rotate a little",
    "zoom": "Zoom in and out",
    "contrast": "Change contrast",
}
LIVE_SECONDS = 1  # how often a running run or timing is redrawn
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
              help="The score on validation photos is measured on a model that has not learned them: an honest "
                   "preview of new photos.")
    st.caption("These *validation* photos check the model: the score on them tells how it will do on photos it has "
               "never seen. After they have measured it, the model learns them too (a retrained network takes a last "
               "step for it). Each photo keeps its place when you add more.")
    ui.readiness_line(project)
    return True


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


def main_settings(fine_tuning: bool, train_photos: int) -> None:
    """The epochs; `train_photos` tells what the automatic number picks."""
    automatic = automatic_epochs(train_photos)
    explained(st.number_input, "One epoch = one pass over every training photo through the network. Used only when "
              "part of the network is retrained (slider above); it stops by itself once the validation photos stop "
              f"improving. Left empty, it is automatic: {automatic} for this project's {train_photos:,} training "
              "photos (a longer schedule pays with many photos, not with a few hundred). The new head needs no "
              "setting: it is solved directly.",
              "Epochs for fine-tuning (at most)", 1, 100, key=key("finetune_epochs"), disabled=not fine_tuning,
              placeholder=f"Automatic ({automatic})")


def rate_label(rate: float | None) -> str:
    return "Automatic" if rate is None else f"{rate:g}"


def advanced_settings(fine_tuning: bool, train_photos: int) -> None:
    """The settings most people leave alone; `train_photos` tells what the automatic learning rate picks."""
    with st.expander("Advanced settings", icon="⚙️"):
        st.caption("All but the seed and the mirroring apply to fine-tuning only, when part of the network is "
                   "retrained.")
        left, middle, right = st.columns(3, gap="large")
        with left:
            explained(st.select_slider, "How big each learning step is: small, so the pretrained knowledge is not "
                      f"wiped out. Automatic picks {automatic_rate(train_photos):g} for this project's "
                      f"{train_photos:,} training photos: a larger step pays with many photos, a smaller one keeps a "
                      "few hundred from being learned by heart.", "Learning rate (fine-tuning)", FINETUNE_RATES,
                      key=key("finetune_learning_rate"), format_func=rate_label, disabled=not fine_tuning)
            explained(st.select_slider, "Photos looked at before each learning step. Bigger is smoother, "
                      "uses more memory.", "Batch size", BATCH_SIZES, key=key("batch_size"), disabled=not fine_tuning)
        with middle:
            explained(st.number_input, "Epochs to wait for the validation score to beat the run's own best so far "
                      "before stopping. The new head is kept unless an epoch beats it.",
                      "Patience (epochs)", 1, 50, key=key("patience"), disabled=not fine_tuning)
            explained(st.number_input, "Same number, same result: change it to see how much luck is involved.",
                      "Random seed", 0, 10_000, key=key("seed"))
        with right:
            explained(st.slider, "Randomly ignores part of what the network sees while training, so the head "
                      "does not lean on a few details.", "Dropout", 0.0, 0.7, step=0.05, key=key("dropout"),
                      disabled=not fine_tuning)
            explained(st.slider, "Keeps the model from being 100% sure, which helps when a few labels are wrong. "
                      "Measured on grocery photos at 0.1, it cost the run its fine-tuning: the new head is kept unless "
                      "the retrained model is surer of the right answers, which smoothing prevents.",
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
