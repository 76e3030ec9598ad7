"""The Train page's sentences: the stages of a run and their progress lines, a finished run's scores, and the
short labels of networks, depths, speeds and gains. Words only: nothing here draws."""

from __future__ import annotations

import math

from core.jobs import api as jobs
from core.model import api as model
from core.model.api import (DEFAULT_BACKBONE, MEASURED_SETS, RECOMMENDED, STAGE_EMBED, STAGE_FINETUNE, STAGE_HEAD,
                            STAGE_REFIT, STRENGTHS, UNLIKE_SET, BackboneSpec, backbone_label, get_backbone)
from core.store.api import RunRecord
from pages import charts, ui


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
    STAGE_REFIT: ("Learning every photo",
                  ("When the retrained network beat the new head, it is retrained once more the same way on all your "
                   "photos, the validation photos too, for as many epochs as did best on them. Its score stays the "
                   "one measured before, on photos it had not seen.")),
}
STARTING = ("Handing the run to the training process",
            "The first run after the app starts waits a few seconds for the deep-learning library to load.")


def depth_label(blocks: int) -> str:
    return "only the new head" if blocks == 0 else f"the last {ui.plural(blocks, 'block')} + the head"


def depth_short(blocks: int) -> str:
    return "head only" if blocks == 0 else f"last {blocks}"


def depth_advice(suggestion: tuple[model.Advice, model.Advice | None] | None, picked: str,
                 joined_gain: float | None) -> str:
    """': try retraining the last 2 blocks of EfficientNet-Lite0 (+3.8 pts on such photos, about 3 min here); the last
    3 gained ...' after the sign of photos unlike everyday ones, from the measured depths
    (core.model.advice.suggested_depth); then what the recommended joined networks' head alone gained on such photos
    (`joined_gain`, points over Lite0's head), and with a joined network `picked`, that it trains the new head only."""
    if suggestion is None:
        return "."
    suggested, deeper = suggestion
    said = (f": try retraining the last {ui.plural(suggested.blocks, 'block')} of {backbone_label(suggested.backbone)} "
            f"({suggested.gain_unlike:+.1f} pts on such photos where measured, about "
            f"{ui.duration(suggested.seconds)} here).")
    if deeper is not None:
        than = "not clearly more" if deeper.gain_unlike > suggested.gain_unlike else "no more"
        said += (f" The last {deeper.blocks} gained {deeper.gain_unlike:+.1f} pts, {than}, in about "
                 f"{ui.duration(deeper.seconds)}.")
    measured = "" if joined_gain is None else \
        f"gained {joined_gain:+.1f} pts on {MEASURED_SETS[UNLIKE_SET][0]}, with no retraining"
    if picked == RECOMMENDED and measured:
        said += (f" {backbone_label(picked)}, chosen above, trains the new head only, which alone {measured}: to "
                 f"retrain blocks, choose {backbone_label(suggested.backbone)}.")
    elif len(get_backbone(picked).members) > 1:
        said += (f" {backbone_label(picked)}, chosen above, trains the new head only: to retrain blocks, choose "
                 f"{backbone_label(suggested.backbone)}.")
    elif measured:
        said += f" Or choose {backbone_label(RECOMMENDED)}: its new head alone {measured}."
    return said


def speed_text(name: str, measured: dict[str, dict], relative: dict[str, float]) -> str:
    """'12 ms (2.4×)': the time of one photo here and how many times the fastest network's it is (a narrow cell: the
    caption under the table says what the brackets mean)."""
    if name not in measured:
        return "not measured"
    pace = "fastest" if relative[name] < 1.05 else f"{relative[name]:.1f}×"
    return f"{measured[name]['ms_per_photo']:.0f} ms ({pace})"


def availability(spec: BackboneSpec) -> str:
    """A few words, so that the table of networks fits a 1024-px screen (its column's help says the rest)."""
    if spec.offline:
        return "✅ offline"
    return "✅ downloaded" if spec.weights_cached() else "🌐 needs internet"


def choice_label(name: str) -> str:
    if name == DEFAULT_BACKBONE:
        return f"{backbone_label(name)} (recommended)"
    return f"{backbone_label(name)} (recommended joined)" if name == RECOMMENDED else backbone_label(name)


def short_label(name: str) -> str:
    """'Lite0 + Lite2': a network's name without the family, for narrow columns."""
    return " + ".join(m.label.removeprefix("EfficientNet-") for m in get_backbone(name).members)


def gain_cell(row: model.Cost, index: int) -> str:
    if row.backbone == DEFAULT_BACKBONE:
        return "the reference"
    return "not measured" if row.gains is None else f"{row.gains[index]:+.1f} pts"


def photos_a_class(counts: tuple[int | None, ...]) -> str:
    """'25', or '96, 156 and 125' when the measured sets' counts differ (all of each set's photos)."""
    if len(set(counts)) == 1:
        return str(counts[0])
    return ", ".join(map(str, counts[:-1])) + f" and {counts[-1]}"


def gain_points(row: model.Advice, gain: float | None) -> str:
    """One of a row's measured gains, as the table of networks and depths writes it."""
    if (row.backbone, row.blocks) == (DEFAULT_BACKBONE, 0):
        return "the reference"
    if gain is None:
        return "not measured"
    return "no gain" if abs(gain) < 0.05 else f"{gain:+.1f} pts"


def stages_line(run: RunRecord, current: str | None) -> str:
    """The steps of this run with the one in progress marked: ✅ done, ⏳ now, ⚪ to come."""
    planned = model.planned_stages(run.config)
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
    bound = "" if stage == STAGE_REFIT else "at most "
    return f"Epoch {max(1, progress.get('epoch', 0))} of {bound}{progress.get('epochs', 0)}{left}"


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
    if ui.learned_validation(summary):
        sentence += " Then it learned them too, so the saved model should do a little better than this on new photos."
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


def finetune_won_sentence(summary: dict, rows: list[dict]) -> str:
    """Fine-tuning beat the head alone and its model was kept: say so, with both scores where they are known."""
    epochs = sum(row["stage"] == STAGE_FINETUNE for row in rows)
    head = next((row.get("val_accuracy") for row in rows if charts.is_strength(row) and summary.get("head_C")
                 is not None and math.isclose(row["C"], summary["head_C"])), None)
    scores = (f" ({ui.percent(head)} with the new head alone, {ui.percent(summary['val_accuracy'])} retrained)"
              if head is not None and summary.get("val_accuracy") is not None else "")
    best, again = summary["best_epoch"][STAGE_FINETUNE], summary.get("finetune_refit_epochs")
    learned = (f", then trained for {ui.plural(again, 'epoch')} more on all your photos, the validation photos too"
               if again else "")
    zoom = (" It judges each photo four ways, as it is, mirrored and both zoomed in on the middle, and averages them: "
            "that was clearly better on your validation photos." if summary.get("test_time_zoom") else "")
    return (f"Retraining the last {ui.plural(summary['unfreeze_blocks'], 'block')} of the network paid off: it beat "
            f"the new head alone on the validation photos{scores}, best after epoch {best} of "
            f"{epochs}. The retrained network is the model kept{learned}.{zoom}")
