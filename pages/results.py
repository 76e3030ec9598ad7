"""Results & export: every training run at a glance, an honest look at one of them, and its files to take away.

The numbers come from the validation photos each run held back, measured on a model that had not learned them
(`evaluation.json` in the run folder). A mislabelled photo found here can be fixed in the dataset on the spot.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from core.serving import api as serving
from core.jobs import api as jobs
from core.model.api import (MEASURED_ELSEWHERE, STAGE_FINETUNE, STAGE_HEAD, NoveltySettings, TrainConfig,
                            backbone_label, same_stages)
from core.store.api import Project, RunFolderInvalid, RunRecord, StoreError, read_evaluation
from core.jobs.api import has_model
from pages import charts, exports, ui
from pages.confusion import confusion_view

STATUS = {"completed": "✅ finished", "stopped": "⏹️ stopped early", "failed": "❌ failed",
          "running": "⏳ training", "queued": "⏳ starting"}
GALLERY_COLUMNS = 4
GALLERY_STEP = 12
# Square, letter-boxed thumbnails, so the cards of the mistakes gallery line up whatever the photo's shape.
CARD_CSS = """<style>
[class*="st-key-mistake_"] [data-testid="stImage"] img {
  aspect-ratio: 1 / 1; object-fit: contain; background: rgba(128, 128, 128, 0.08); border-radius: 6px; }
</style>"""


def settings_text(run: RunRecord) -> str:
    cfg = TrainConfig.from_dict(run.config)
    strength = run.summary.get("head_C")
    text = f"head C={strength:.3g}" if strength is not None else "head"
    if cfg.unfreeze_blocks:
        text += f"; then {epochs_text(cfg, run.summary)} at {rate_text(cfg, run.summary)}, batch {cfg.batch_size}"
    return text


def epochs_text(cfg: TrainConfig, summary: dict) -> str:
    """The most epochs the run was to fine-tune for: the number chosen, or the automatic one for its photos."""
    if cfg.finetune_epochs is not None:
        return f"≤{cfg.finetune_epochs} epochs"
    used = summary.get("finetune_epochs")
    return f"≤{used} epochs (automatic)" if used is not None else "the automatic number of epochs"


def rate_text(cfg: TrainConfig, summary: dict) -> str:
    """The peak rate the run fine-tuned at: the one chosen, or the automatic one it worked out for its photos
    (runs before the automatic rate stored theirs in the config)."""
    if cfg.finetune_learning_rate is not None:
        return f"rate {cfg.finetune_learning_rate:g}"
    used = summary.get("finetune_learning_rate")
    return f"rate {used:g} (automatic)" if used is not None else "the automatic rate"


def took(run: RunRecord) -> str:
    return ui.duration(run.finished - run.created) if run.finished else "—"


def accuracy_text(summary: dict) -> str:
    """'98% (52 of 53)': the share, and the photos behind it, which tell 98.0 from 98.4 apart."""
    accuracy, n = summary.get("val_accuracy"), summary.get("val_images") or 0
    if accuracy is None or not n:
        return "—"
    return f"{ui.percent(accuracy)} ({round(accuracy * n)} of {n})"


def model_text(run: RunRecord) -> str:
    """'EfficientNet-Lite0 · last 1 block + head'."""
    return f"{backbone_label(run.config.get('backbone', '?'))} · {ui.retrained(run.config.get('unfreeze_blocks', 0))}"


# ---- all runs -------------------------------------------------------------------------------------


def history(runs: list[RunRecord]) -> None:
    rows = [{
        "Run": run.id, "Started": datetime.fromtimestamp(run.created), "Status": STATUS.get(run.status, run.status),
        "Model": model_text(run),
        "Photos": run.summary.get("images_used"),
        "Validation accuracy": ui.percent(run.summary["val_accuracy"])
        if run.summary.get("val_accuracy") is not None else "—",
        "Took": took(run),
    } for run in runs]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="run_history", column_config={
        "Run": st.column_config.NumberColumn(width="small"),
        "Started": st.column_config.DatetimeColumn(format="D MMM, HH:mm"),
        "Model": st.column_config.TextColumn(width="large", help="The pretrained network, and how much of it was "
                                             "retrained besides the new head."),
        "Took": st.column_config.TextColumn(width="small"),
        "Photos": st.column_config.NumberColumn(width="small", help="Photos used: training + validation."),
        "Validation accuracy": st.column_config.TextColumn(
            help="Share of the validation photos that the model named right, measured before it could learn them."),
    })


def finetune_text(run: RunRecord, rows: list[dict]) -> str:
    """How fine-tuning went, in a cell."""
    if not run.config.get("unfreeze_blocks"):
        return "—"
    ran = sum(1 for r in rows if r["stage"] == STAGE_FINETUNE)
    if run.summary.get("finetune_kept_head"):
        return f"{ui.plural(ran, 'epoch')}, none beat the head: head kept"
    best = (run.summary.get("best_epoch") or {}).get(STAGE_FINETUNE)
    return f"{ui.plural(ran, 'epoch')}, best: {best}" if best else ui.plural(ran, 'epoch')


def compare_table(runs: list[RunRecord], rows: dict[int, list[dict]]) -> pd.DataFrame:
    """Final figures of the runs side by side: one column per run."""
    lines = {
        "Validation accuracy": lambda r: accuracy_text(r.summary),
        "Network": lambda r: backbone_label(r.config.get("backbone", "?")),
        "Retrained": lambda r: ui.retrained(r.config.get("unfreeze_blocks", 0)),
        "Settings": settings_text,
        "Fine-tuning": lambda r: finetune_text(r, rows[r.id]),
        "Photos used": lambda r: f"{r.summary['images_used']:,}" if r.summary.get("images_used") else "—",
        "Took": took,
        "Status": lambda r: STATUS.get(r.status, r.status),
    }
    return pd.DataFrame([{"": name, **{f"Run {r.id}": cell(r) for r in runs}} for name, cell in lines.items()])


def compare_notes(runs: list[RunRecord], rows: dict[int, list[dict]]) -> str:
    """What the chart cannot say by itself: lines that coincide, runs missing from a panel."""
    first, second = runs
    notes = [f"One colour per run: run {first.id} is the wide pale line, run {second.id} the thin one on it. **Solid "
             "lines are training photos** (for the head, each judged by a head fitted without it), **dashed lines "
             "validation photos**, held back while these were measured: the run whose dashed accuracy ends higher did "
             "better on photos it had never seen. Each panel has its own axes, zoomed on its lines; a dotted line "
             "marks the strength each head kept."]
    alike = same_stages(rows[first.id], rows[second.id])
    if STAGE_HEAD in alike:
        notes.append(f"Runs {first.id} and {second.id} solved **the same head** (same photos and settings), so their "
                     "head lines lie exactly on each other.")
    if STAGE_FINETUNE in alike:
        notes.append("Their fine-tuning went exactly the same way too.")
    for run in runs:
        if not any(r["stage"] == STAGE_FINETUNE for r in rows[run.id]):
            notes.append(f"Run {run.id} did not fine-tune the network: it has no line in the fine-tuning panels.")
    return " ".join(notes)


def compare(project: Project, runs: list[RunRecord]) -> None:
    """Two runs side by side: their final figures in a table, their curves stage by stage on the same axes."""
    rows = {r.id: project.epochs(r.id) for r in runs}
    by_id = {r.id: r for r in runs if rows[r.id]}
    if len(by_id) < 2:
        return
    st.subheader("Compare two runs")
    chosen = st.multiselect("Runs to compare", list(by_id), default=list(by_id)[:2], max_selections=2,
                            format_func=lambda i: ui.run_label(by_id[i]), key="compare_runs",
                            help="Pick two runs to see their figures side by side and their curves on the same axes.")
    if len(chosen) < 2:
        st.caption("Pick a second run to compare.")
        return
    pair = [by_id[i] for i in chosen]
    st.dataframe(compare_table(pair, rows), hide_index=True, key="compare_table", width="stretch",
                 column_config={"": st.column_config.TextColumn(width="small")})
    names = [f"run {r.id}" for r in pair]
    strengths = pd.concat([charts.strength_frame(rows[r.id], name, r.summary.get("head_C"))
                           for r, name in zip(pair, names)])
    epochs = pd.concat([charts.epoch_frame(rows[r.id], name) for r, name in zip(pair, names)])
    panels = ([charts.strength_chart(strengths, names)] if not strengths.empty else []) + \
        charts.epoch_charts(epochs, names)
    st.altair_chart(charts.panels(panels), width="stretch")
    st.caption(compare_notes(pair, rows))


# ---- one run --------------------------------------------------------------------------------------


def headline(run: RunRecord, evaluation: dict) -> None:
    summary = run.summary
    accuracy, n = evaluation["accuracy"], evaluation["n"]
    a, b, c, d = st.columns(4)
    a.metric("Validation accuracy", ui.percent(accuracy) if n else "—",
             help="Share of the validation photos that the model named right, measured before it could learn them.")
    b.metric("Validation photos", n)
    c.metric("Training photos", summary.get("train_images", "—"))
    d.metric("Training time", ui.duration(summary.get("train_seconds", 0)))
    if ui.learned_validation(summary):
        st.caption(f"ℹ️ {ui.LEARNED_VALIDATION}")
    if n and n < 20:
        st.caption(f"⚠️ Only {n} validation photos: one more mistake or one fewer moves the score by "
                   f"{ui.percent(1 / n)}. More photos (or a larger validation share on Train) give a firmer figure.")


def confusion(evaluation: dict) -> None:
    names = evaluation["class_names"]
    left, right = st.columns(2, gap="large")
    with left:
        confusion_view(names, evaluation["confusion"])
    with right:
        st.markdown("**Class by class**")
        table = pd.DataFrame(evaluation["per_class"]).rename(columns={
            "class": "Class", "precision": "Precision", "recall": "Recall", "f1": "F1", "support": "Photos"})
        table[["Precision", "Recall", "F1"]] *= 100
        st.dataframe(table, hide_index=True, key="per_class", column_config={
            "Precision": st.column_config.NumberColumn(
                format="%.0f%%", help="When the model says this class, how often it is right."),
            "Recall": st.column_config.NumberColumn(
                format="%.0f%%", help="Of the photos really in this class, how many the model finds."),
            "F1": st.column_config.NumberColumn(format="%.0f%%", help="Precision and recall in one number."),
            "Photos": st.column_config.NumberColumn(help="Validation photos in this class."),
        })
        st.caption("**Precision**: when it says *this class*, how often it is right. **Recall**: of the photos "
                   "really in this class, how many it finds. **F1** combines the two.")


def in_100(share: float) -> str:
    return f"{round(share * 100)} in 100"


def unfamiliar_photos(run: RunRecord) -> None:
    """How well the run's "not one of your classes" check works, in words, with the references named."""
    st.markdown("**Photos unlike your classes**")
    try:
        settings = NoveltySettings.load(run.dir)
    except RunFolderInvalid as exc:
        st.warning(f"The check for photos unlike your classes cannot be read: {ui.md(exc)}")
        return
    if settings is None:
        st.caption("This run has no check for photos unlike your classes (runs from before the check existed have "
                   "none): it always names one of your classes.")
        return
    if not settings.own_scores:
        st.caption("This run had too few photos to set its check for photos unlike your classes.")
        return
    # a network trained again on every photo has no validation photos left: its check was set on training photos only
    validation = f"{ui.plural(len(settings.val_scores), 'validation photo')} and " if settings.val_scores else ""
    lines = [f"- Of 100 photos of **your own classes** that it never trained on, it wrongly says that about "
             f"**{round(settings.false_alarms() * 100)}** (measured on this run's {validation}"
             f"{ui.plural(len(settings.left_out_scores), 'training photo')}, each left out of the comparison)."]
    caught = settings.caught_hidden()
    if caught is not None:
        lines.append(f"- Of 100 photos of **a kind close to yours** that it has never seen, it would catch "
                     f"**{round(caught * 100)}** (measured by hiding each of your classes from it in turn: "
                     "things much like your classes are the hard case).")
    lines.append(f"- Of 100 photos of **entirely different things**, it caught {MEASURED_ELSEWHERE}.")
    st.markdown("When a photo is unlike all your classes, Try it says “This doesn't look like any of your classes” "
                "instead of a confident wrong label.\n" + "\n".join(lines))
    st.caption("Move the “not one of your classes” setting on Try it to catch more strangers at the cost of more "
               "false alarms on your own photos; the downloads carry the same check (their `novelty` output) and "
               "the setting is kept in the run folder's novelty.json.")


def fix(project: Project, image_id: int, path: str, action: str, target: str) -> None:
    """Move a photo to the class the model saw in it, or reject it; remembered so the card can say so."""
    try:
        if action == "move":
            project.move([image_id], target)
            done = f"moved to **{ui.md(target)}**"
        else:
            project.reject([image_id], "rejected from results")
            done = "rejected"
    except StoreError as exc:
        done = f"not changed: {exc}"
    st.session_state.setdefault("results_fixed", {})[path] = done


def mistake_card(project: Project, run: RunRecord, index: int, item: dict) -> None:
    fixed = st.session_state.get("results_fixed", {}).get(item["path"])
    record = project.image_at(Path(item["path"]))
    with st.container(border=True, key=f"mistake_{run.id}_{index}"):
        if record is not None:
            ui.thumbnail(project, record)
        st.markdown(f"Labelled **{ui.md(item['true'])}** · model said **{ui.md(item['predicted'])}** "
                    f"({ui.percent(item['confidence'])} sure)")
        if fixed:
            st.caption(f"✅ Photo {fixed}. Train again to use the change.")
        elif record is None or record.class_name != item["true"]:
            st.caption("This photo has been moved or deleted since this run.")
        elif record.status == "rejected":
            st.caption("This photo is rejected: it no longer takes part in training.")
        else:
            st.button(f"Move to {item['predicted']}", key=f"fix_{run.id}_{index}", on_click=fix,
                      args=(project, record.id, item["path"], "move", item["predicted"]), width="stretch",
                      help=f"The label was wrong: this photo really shows {item['predicted']}.")
            st.button("Reject the photo", key=f"reject_{run.id}_{index}", on_click=fix,
                      args=(project, record.id, item["path"], "reject", ""), width="stretch", type="tertiary",
                      help="The photo is no good for any class (blurry, off-topic…): leave it out of training.")


def mistakes(project: Project, run: RunRecord, evaluation: dict) -> None:
    wrong = evaluation["misclassified"]
    st.subheader(f"Photos it got wrong ({len(wrong)})")
    if not wrong:
        st.success("It named every validation photo right.", icon="🎯")
        return
    st.markdown("The most confident mistakes first. If the model is right and the **label is wrong**, move the "
                "photo to the class it really shows; if the photo is no good, reject it. Otherwise the model simply "
                "erred: more varied photos of that class help."
                + (" These are its answers before it learned the validation photos: the saved model may now name "
                   "some of them right." if ui.learned_validation(run.summary) else ""))
    st.html(CARD_CSS)
    shown_key = f"results_shown_{run.id}"
    shown = st.session_state.get(shown_key, GALLERY_STEP)
    columns = st.columns(GALLERY_COLUMNS)
    for i, item in enumerate(wrong[:shown]):
        with columns[i % GALLERY_COLUMNS]:
            mistake_card(project, run, i, item)
    if len(wrong) > shown:
        st.button(f"Show {min(GALLERY_STEP, len(wrong) - shown)} more", key="results_more",
                  on_click=lambda: st.session_state.update({shown_key: shown + GALLERY_STEP}))
    if st.session_state.get("results_fixed"):
        st.page_link(ui.PAGES["train"], label="Train again with the fixed photos", icon="🏋️")


# ---- export ---------------------------------------------------------------------------------------


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "transferlab"


def download(label: str, path: Path, file_name: str, key: str, explanation: str) -> None:
    """A download button for a file (read only when clicked) with what the file is for."""
    st.download_button(f"{label} ({ui.file_size(path.stat().st_size)})", data=path.read_bytes, file_name=file_name, key=key,
                       mime="application/octet-stream", icon="⬇️", on_click="ignore", width="stretch")
    st.caption(explanation)


def make_zip(project: Project, path: Path) -> None:
    with st.spinner("Packing the photos…"):
        path.parent.mkdir(parents=True, exist_ok=True)
        serving.dataset_zip(project, path)
    st.rerun()


def model_downloads(project: Project, run: RunRecord, name: str, waiting: bool) -> None:
    """The model files once they are assembled; until then what is happening (polled while it happens)."""
    state = jobs.downloads(project, run)
    if waiting and state != "preparing":
        st.rerun()  # made meanwhile: redraw the page with its buttons
    if state == "preparing":
        st.info("⏳ Preparing downloads… The .keras and TFLite files are being made from the model in the background "
                "(under a minute); the model already works on *Try it*.")
        return
    if state == "failed":
        st.warning(f"The model files could not be made: {serving.downloads_error(run.dir)}", icon="⚠️")
        st.button("Try again", key="retry_downloads", on_click=jobs.retry_downloads, args=(project, run))
        return
    model, device = st.columns(2, gap="large")
    with model:
        st.markdown("**For Python**")
        download("Model (.keras)", run.dir / "model.keras", f"{name}.keras", "download_keras",
                 "The whole model for Keras / TensorFlow: `keras.saving.load_model(…)`; it takes raw RGB pixels.")
        download("Class names (labels.txt)", run.dir / "labels.txt", f"{name}-labels.txt", "download_labels",
                 "One class name per line, in the order of the model's outputs.")
    with device:
        st.markdown("**For phones and small devices** (TFLite / LiteRT)")
        lite, quant = (run.dir / serving.TFLITE_FILES[quantized] for quantized in (False, True))
        download("Model (.tflite)", lite, f"{name}.tflite", "download_tflite",
                 "Full precision, for Android, iOS, Raspberry Pi and other LiteRT runtimes.")
        download("Small model (.tflite)", quant, f"{name}-quant.tflite", "download_tflite_quant",
                 "Quantized weights: about 4× smaller with nearly the same answers, best on phones and small boards.")


def export_section(project: Project, run: RunRecord) -> None:
    st.subheader("Download")
    name = f"{slug(project.name)}-run{run.id}"
    models, data = st.columns([2, 1], gap="large")
    with models:
        waiting = jobs.downloads(project, run) == "preparing"
        st.fragment(run_every=2 if waiting else None)(model_downloads)(project, run, name, waiting)
    with data:
        st.markdown("**The photos**")
        archive = project.meta_dir / "exports" / f"{slug(project.name)}-photos.zip"
        if archive.exists():
            made = datetime.fromtimestamp(archive.stat().st_mtime).strftime("%d %b, %H:%M")
            download("Dataset (.zip)", archive, archive.name, "download_zip",
                     f"Every kept photo, one folder per class, for any other tool. Packed {made}.")
        if st.button("Pack the photos again" if archive.exists() else "Pack the photos into a zip", key="make_zip",
                     icon="🗜️", help="Takes the photos as they are now, with every change made on Review."):
            make_zip(project, archive)
    if jobs.downloads(project, run) == "ready":
        exports.section(project, run, name)


# ---- the page -------------------------------------------------------------------------------------

st.title("📊 Results & export")
st.markdown("How well each model did on photos held back from its training, where it goes wrong, and the files to use "
            "it elsewhere.")

project = ui.require_project()
def show_evaluation(project: Project, run: RunRecord, evaluation: dict | None) -> None:
    """The run's figures on its validation photos, or why there are none."""
    if evaluation is None or not evaluation["n"]:
        st.info("This run had no validation photos, so there is nothing honest to show: raise the share of photos "
                "held back on Train and train again.")
        return
    headline(run, evaluation)
    confusion(evaluation)
    unfamiliar_photos(run)
    mistakes(project, run, evaluation)


runs = project.runs()
if not runs:
    ui.missing("No model yet: train one first, and its results appear here.", "train", "Go to training", icon="🏋️")

st.subheader("All runs")
history(runs)
compare(project, runs)

finished = [r for r in runs if has_model(r)]
if not finished:
    ui.missing("No run has finished yet: results appear here once one has.", "train", "Go to training", icon="🏋️")

st.divider()
by_id = {r.id: r for r in finished}
run = by_id[st.selectbox("Run to look at", list(by_id), format_func=lambda i: ui.run_label(by_id[i]),
                         key="results_run", help="The newest finished run is picked for you; “% right” is the "
                                                 "share of its validation photos it named right.")]
try:
    evaluation = read_evaluation(run.dir)
except RunFolderInvalid as exc:
    st.error(f"The results of run {run.id} cannot be shown: {ui.md(exc)} Pick another run above, or train again.")
else:
    show_evaluation(project, run, evaluation)
st.divider()
export_section(project, run)
st.page_link(ui.PAGES["predict"], label="Try this model on new photos", icon="🔮")
