"""The Train page's view of a run: live progress while it trains, its outcome afterwards, and its curves."""

from __future__ import annotations

import streamlit as st

from core.jobs import api as jobs
from core.jobs.api import has_model
from core.model.api import STAGE_EMBED, STAGE_FINETUNE, STAGE_HEAD, STAGE_REFIT
from core.store.api import Project, RunRecord
from pages import charts, ui
from pages.train_text import (STAGE_TEXT, STARTING, accuracy_sentence, batch_text, finetune_won_sentence,
                              head_sentence, progress_text, stages_line)


def live_view(project: Project, run: RunRecord) -> None:
    # The same elements in the same order on every refresh, so that nothing jumps while the numbers change.
    progress = run.progress
    stage = progress.get("stage") if run.status == "running" else None
    st.markdown(stages_line(run, stage))
    waiting = progress.get("waiting") if run.status == "running" and not stage else None  # its turn (core.jobs.turns)
    title, explanation = ("Waiting for its turn", waiting) if waiting else STAGE_TEXT.get(stage, STARTING)
    st.markdown(f"**Now: {title.lower()}.** {explanation}")
    st.progress(min(1.0, progress.get("fraction", 0.0)) if stage else 0.0,
                text="Training starts as soon as the check is done." if waiting else progress_text(
                    progress if stage else {}))
    st.caption(batch_text(progress if stage else {}))
    if run.stop_requested:
        st.info("Stopping after the current batch… The best model so far is kept.", icon="⏹️")
    else:
        st.button("⏹️ Stop training", key="stop_run", on_click=jobs.stop, args=(project, run.id),
                  help="Ends the run cleanly after the current batch and keeps the best model found so far.")
    st.caption("You can leave this page or close the tab: training goes on, and this page shows it when you return.")


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
    elif run.summary.get("unfreeze_blocks") and (run.summary.get("best_epoch") or {}).get(STAGE_FINETUNE):
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
            f"3. *Optional:* **{STAGE_TEXT[STAGE_FINETUNE][0]}** — {STAGE_TEXT[STAGE_FINETUNE][1]}\n"
            f"4. *After fine-tuning:* **{STAGE_TEXT[STAGE_REFIT][0]}** — {STAGE_TEXT[STAGE_REFIT][1]}\n\n"
            "The defaults suit most projects: click **Train** and watch it learn.")
