"""Altair charts shared by the Train and Results pages: learning curves, the head's regularisation search and
the confusion heat map."""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.train import STAGE_FINETUNE, STAGE_HEAD

METRICS = {
    "loss": "Loss: how wrong it is (lower is better)",
    "accuracy": "Accuracy: share of photos it gets right",
}
SPLITS = {"": "training photos", "val_": "validation photos"}  # Keras log prefix -> plain name
STAGES = {STAGE_HEAD: "new head", STAGE_FINETUNE: "fine-tuning"}
SPLIT_COLOURS = alt.Scale(domain=list(SPLITS.values()), range=["#2f6fdf", "#e8710a"])
CURVE_COLUMNS = ["run", "step", "stage", "epoch", "metric", "split", "value"]


def is_strength(row: dict) -> bool:
    """A head fitted at one regularisation strength (C), not an epoch (older runs trained their head in epochs)."""
    return "C" in row


def curve_frame(epochs: list[dict], run: str = "") -> pd.DataFrame:
    """One row per (epoch, metric, split); `step` counts epochs across both stages so they share one x axis."""
    epochs = [e for e in epochs if not is_strength(e)]
    rows = [
        {"run": run, "step": step, "stage": STAGES.get(e["stage"], e["stage"]), "epoch": e["epoch"],
         "metric": metric, "split": split, "value": e[prefix + metric]}
        for step, e in enumerate(epochs, start=1)
        for metric in METRICS
        for prefix, split in SPLITS.items()
        if e.get(prefix + metric) is not None
    ]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def curve_chart(frame: pd.DataFrame, metric: str, *, colour: str = "split", dash: str | None = None,
                height: int = 260) -> alt.LayerChart:
    """Lines of one metric per epoch; a dashed rule marks where fine-tuning of the backbone began."""
    data = frame[frame["metric"] == metric]
    accuracy = metric == "accuracy"
    y = alt.Y("value:Q", title=None, scale=alt.Scale(domain=[0, 1]) if accuracy else alt.Scale(zero=True),
              axis=alt.Axis(format="%" if accuracy else ".2f"))
    x = alt.X("step:Q", title="epoch (one pass over the training photos)",
              axis=alt.Axis(tickMinStep=1, format="d"), scale=alt.Scale(nice=False))
    colour_scale = SPLIT_COLOURS if colour == "split" else alt.Scale(scheme="category10")
    encodings = {
        "x": x, "y": y,
        "color": alt.Color(f"{colour}:N", title=None, scale=colour_scale, legend=alt.Legend(orient="bottom")),
        "tooltip": [alt.Tooltip("run:N"), alt.Tooltip("stage:N"), alt.Tooltip("epoch:Q", title="epoch of stage"),
                    alt.Tooltip("split:N", title="measured on"),
                    alt.Tooltip("value:Q", title=metric, format=".1%" if accuracy else ".3f")],
    }
    if dash:
        encodings["strokeDash"] = alt.StrokeDash(f"{dash}:N", title=None, legend=alt.Legend(orient="bottom"))
    # dots mark each epoch; when dashes tell training from validation, dots would hide the dashes
    lines = alt.Chart(data).mark_line(point=False if dash else alt.OverlayMarkDef(size=30)).encode(**encodings)
    starts = (data[data["stage"] == STAGES[STAGE_FINETUNE]].groupby("run", as_index=False)["step"].min()
              .assign(step=lambda d: d["step"] - 0.5, label="fine-tuning starts"))
    rule = alt.Chart(starts).mark_rule(strokeDash=[5, 4], color="#888").encode(x="step:Q")
    # the label sits where the curves rarely are: low on the accuracy chart, high on the loss chart
    note = alt.Chart(starts).mark_text(align="left", dx=4, baseline="bottom" if accuracy else "top",
                                       color="#666").encode(
        x="step:Q", y=alt.datum(0.0 if accuracy else float(data["value"].max())), text="label:N")
    return alt.layer(lines, rule, note).properties(title=METRICS[metric], height=height)


STRENGTH_SPLITS = {"cv_": "training photos, cross-validated", "val_": "validation photos"}


def strength_frame(tried: list[dict]) -> pd.DataFrame:
    """One row per (strength, split) of the head's accuracy, from the run's strength rows."""
    return pd.DataFrame([
        {"C": row["C"], "split": split, "accuracy": row[prefix + "accuracy"], "loss": row[prefix + "loss"],
         "chosen": row.get("chosen", False)}
        for row in tried if is_strength(row)
        for prefix, split in STRENGTH_SPLITS.items() if row.get(prefix + "accuracy") is not None
    ], columns=["C", "split", "accuracy", "loss", "chosen"])


def strength_chart(frame: pd.DataFrame, height: int = 260) -> alt.LayerChart:
    """Accuracy against regularisation strength (left: strong, right: weak), the chosen strength marked."""
    powers = [10.0 ** k for k in range(-4, 4)]
    x = alt.X("C:Q", scale=alt.Scale(type="log"), title="C (left: strong regularisation, simple head; right: weak)",
              axis=alt.Axis(format="~g", values=powers, grid=False))
    colours = alt.Scale(domain=list(STRENGTH_SPLITS.values()), range=["#2f6fdf", "#e8710a"])
    lines = alt.Chart(frame).mark_line(point=alt.OverlayMarkDef(size=30)).encode(
        x=x, y=alt.Y("accuracy:Q", title=None, scale=alt.Scale(zero=False, nice=True),
                     axis=alt.Axis(format=".0%", tickCount=5)),
        color=alt.Color("split:N", title=None, scale=colours, legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("C:Q", format=".3g"), alt.Tooltip("split:N", title="measured on"),
                 alt.Tooltip("accuracy:Q", format=".1%"), alt.Tooltip("loss:Q", format=".3f")])
    chosen = alt.Chart(frame[frame["chosen"]].drop_duplicates("C")).mark_rule(strokeDash=[5, 4], color="#888").encode(x=x)
    return alt.layer(lines, chosen).properties(title="Accuracy at each regularisation strength", height=height)


def confusion_chart(class_names: list[str], confusion: list[list[int]]) -> alt.LayerChart:
    """Heat map of real class (rows) against predicted class (columns), each cell labelled with its count."""
    rows = []
    for i, true in enumerate(class_names):
        total = sum(confusion[i]) or 1
        for j, predicted in enumerate(class_names):
            count = confusion[i][j]
            rows.append({"real class": true, "model said": predicted, "photos": count, "share": count / total})
    data = pd.DataFrame(rows)
    side = max(28, min(72, 320 // max(1, len(class_names))))  # fits half a wide page, up to ~12 classes
    base = alt.Chart(data).encode(
        x=alt.X("model said:N", sort=class_names, title="what the model said",
                axis=alt.Axis(labelAngle=-30, orient="top", labelLimit=140)),
        y=alt.Y("real class:N", sort=class_names, title="real class", axis=alt.Axis(labelLimit=140)),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]),
                        legend=alt.Legend(title="share of the real class", format="%", orient="bottom",
                                          direction="horizontal", gradientLength=max(120, side * len(class_names)))),
        tooltip=["real class:N", "model said:N", "photos:Q", alt.Tooltip("share:Q", format=".0%")],
    )
    counts = base.mark_text(fontSize=14).encode(
        text="photos:Q",
        color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("#222")),
    )
    return alt.layer(cells, counts).properties(width=alt.Step(side), height=alt.Step(side))
