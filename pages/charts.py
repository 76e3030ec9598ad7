"""Altair charts shared by the Train and Results pages: the head's regularisation search, fine-tuning's epochs
(of one run, or of two runs laid over each other) and the confusion heat map.

Each stage has its own panel and its own x axis (the head's strengths, fine-tuning's epochs), and the accuracy
axis is zoomed on the data, so that 98 % against 100 % is a visible gap rather than one line.
"""

from __future__ import annotations

import math

import altair as alt
import pandas as pd

from core.model.api import STAGE_FINETUNE, STAGE_HEAD
from pages.ui import PERCENT

SPLITS = {"": "training photos", "val_": "validation photos"}  # Keras log prefix -> plain name
STRENGTH_SPLITS = {"cv_": "training photos, cross-validated", "val_": "validation photos"}
STAGES = {STAGE_HEAD: "new head", STAGE_FINETUNE: "fine-tuning"}
SPLIT_COLOURS = alt.Scale(domain=list(SPLITS.values()), range=["#2f6fdf", "#e8710a"])
STRENGTH_COLOURS = alt.Scale(domain=list(STRENGTH_SPLITS.values()), range=["#2f6fdf", "#e8710a"])
# Comparing runs: colours unlike the training/validation pair above; training solid, validation dashed.
RUN_COLOURS = ["#1b9e77", "#7b3294"]
DASHES = alt.Scale(domain=[*SPLITS.values(), STRENGTH_SPLITS["cv_"]], range=[[1, 0], [6, 4], [1, 0]])
# The first run wide and pale beneath, the second thin on top: two identical curves still show as two.
RUN_WIDTHS, RUN_OPACITIES = [7, 2], [0.4, 1.0]
EPOCH_COLUMNS = ["run", "stage", "epoch", "split", "accuracy", "loss"]
HEIGHT = 220


def is_strength(row: dict) -> bool:
    """A head fitted at one regularisation strength (C), not an epoch (older runs trained their head in epochs)."""
    return "C" in row


def epoch_frame(epochs: list[dict], run: str = "") -> pd.DataFrame:
    """One row per (stage, epoch, split) with its accuracy and loss; strengths are left to `strength_frame`."""
    return pd.DataFrame([
        {"run": run, "stage": STAGES.get(e["stage"], e["stage"]), "epoch": e["epoch"], "split": split,
         "accuracy": e.get(prefix + "accuracy"), "loss": e.get(prefix + "loss")}
        for e in epochs if not is_strength(e)
        for prefix, split in SPLITS.items() if e.get(prefix + "accuracy") is not None
    ], columns=EPOCH_COLUMNS)


def strength_frame(tried: list[dict], run: str = "", chosen: float | None = None) -> pd.DataFrame:
    """One row per (strength, split) of the head's accuracy, from the run's strength rows; `chosen`: the strength the
    run kept (its summary's head_C; the rows are written before the choice is made)."""
    return pd.DataFrame([
        {"run": run, "C": row["C"], "split": split, "accuracy": row[prefix + "accuracy"], "loss": row[prefix + "loss"],
         "chosen": chosen is not None and math.isclose(row["C"], chosen)}
        for row in tried if is_strength(row)
        for prefix, split in STRENGTH_SPLITS.items() if row.get(prefix + "accuracy") is not None
    ], columns=["run", "C", "split", "accuracy", "loss", "chosen"])


def zoomed(values: pd.Series, *, least: float = 0.04, margin: float = 0.15) -> list[float]:
    """An accuracy axis around the data, not 0..100 %: a margin above and below, at least `least` tall, in whole
    percents within 0..1."""
    low, high = float(values.min()), float(values.max())
    pad = max((least - (high - low)) / 2, (high - low) * margin)
    low, high = low - pad, high + pad
    if high > 1.0:  # shifted back inside 0..1, keeping its height
        low, high = max(0.0, low - (high - 1.0)), 1.0
    if low < 0.0:
        low, high = 0.0, min(1.0, high - low)
    return [math.floor(low * 100) / 100, math.ceil(high * 100) / 100]


def inner_axis(**kwargs) -> alt.Axis:
    """A y axis whose labels sit inside the plot, above their grid lines: Streamlit gives each panel of a stacked
    chart the page's whole width for its plot, so labels outside it would push the chart past the page's edge."""
    return alt.Axis(labelAlign="left", labelBaseline="bottom", labelPadding=-4, labelOffset=-2, ticks=False,
                    domain=False, labelColor="#666", minExtent=0, maxExtent=0, **kwargs)


def accuracy_axis(frame: pd.DataFrame) -> alt.Y:
    return alt.Y("accuracy:Q", title=None, scale=alt.Scale(domain=zoomed(frame["accuracy"]), nice=False, padding=8),
                 axis=inner_axis(format=PERCENT, tickMinStep=0.01, tickCount=5))


def loss_axis() -> alt.Y:
    return alt.Y("loss:Q", title=None, scale=alt.Scale(zero=False, nice=True, padding=8),
                 axis=inner_axis(format=".3~f", tickCount=5))


def tooltips(x: alt.Tooltip) -> list[alt.Tooltip]:
    return [alt.Tooltip("run:N"), x, alt.Tooltip("split:N", title="measured on"),
            alt.Tooltip("accuracy:Q", format=PERCENT), alt.Tooltip("loss:Q", format=".3f")]


def lines(frame: pd.DataFrame, x: alt.X, y: alt.Y, tooltip: alt.Tooltip, colours: alt.Scale,
          runs: list[str] | None) -> alt.LayerChart:
    """Lines of one run coloured by split; when comparing `runs`, one colour and width per run, validation dashed
    (the same colour for a run in every panel, even one where the other run has no line)."""
    base = alt.Chart(frame).encode(x=x, y=y, tooltip=tooltips(tooltip))
    if not runs:
        return base.mark_line(point=alt.OverlayMarkDef(size=30, clip=True), clip=True).encode(
            color=alt.Color("split:N", title=None, scale=colours, legend=alt.Legend(orient="bottom", labelLimit=320)))
    legend = alt.Legend(orient="bottom", symbolType="stroke", symbolSize=400)
    by_run = {"color": alt.Color("run:N", title=None, legend=legend,
                                 scale=alt.Scale(domain=runs, range=RUN_COLOURS[:len(runs)])),
              "strokeWidth": alt.StrokeWidth("run:N", title=None, legend=legend,
                                             scale=alt.Scale(domain=runs, range=RUN_WIDTHS[:len(runs)])),
              "opacity": alt.Opacity("run:N", title=None, legend=legend,
                                     scale=alt.Scale(domain=runs, range=RUN_OPACITIES[:len(runs)])),
              "strokeDash": alt.StrokeDash("split:N", scale=DASHES, legend=None)}  # the page's caption says which
    # one layer per run, in order: the wide pale line lies under the thin one
    marks = {"point": alt.OverlayMarkDef(size=25, clip=True), "clip": True}
    return alt.layer(*[base.transform_filter(alt.datum.run == run).mark_line(**marks).encode(**by_run) for run in runs])


def strength_x(strengths: pd.Series) -> alt.X:
    """A log axis just wider than the strengths tried (the end points show whole), ticked at powers of ten, or at
    the one strength of a head solved without a search."""
    low, high = float(strengths.min()) / 1.3, float(strengths.max()) * 1.3
    ticks = [10.0 ** k for k in range(-6, 7) if low <= 10.0 ** k <= high] or sorted(set(strengths))
    return alt.X("C:Q", scale=alt.Scale(type="log", domain=[low, high], nice=False),
                 title="C (left: strong regularisation, simple head; right: weak)",
                 axis=alt.Axis(format="~g", values=ticks, grid=False, labelFlush=True))


def strength_chart(frame: pd.DataFrame, runs: list[str] | None = None, height: int = HEIGHT) -> alt.LayerChart:
    """Accuracy against regularisation strength (left: strong, right: weak), the chosen strength marked; `runs`
    to compare several."""
    x = strength_x(frame["C"])
    chosen = alt.Chart(frame[frame["chosen"]].drop_duplicates(["run", "C"])).mark_rule(
        clip=True, strokeDash=[2, 3], color="#888").encode(x=x)
    return alt.layer(lines(frame, x, accuracy_axis(frame), alt.Tooltip("C:Q", format=".3g"), STRENGTH_COLOURS, runs),
                     chosen).properties(title="New head: accuracy at each regularisation strength", height=height)


def epoch_charts(frame: pd.DataFrame, runs: list[str] | None = None, height: int = HEIGHT) -> list[alt.LayerChart]:
    """Per stage trained in epochs (fine-tuning; the head of older runs): accuracy, then loss, against that stage's
    own epochs; `runs` to compare several."""
    charts = []
    for stage, data in frame.groupby("stage", sort=False):
        x = alt.X("epoch:Q", title=f"{stage}: epoch (one pass over the training photos)",
                  scale=alt.Scale(domain=[1, max(2, int(data["epoch"].max()))], nice=False, padding=8),
                  axis=alt.Axis(tickMinStep=1, format="d", labelFlush=True))
        tip = alt.Tooltip("epoch:Q", title=f"epoch of {stage}")
        charts.append(lines(data, x, accuracy_axis(data), tip, SPLIT_COLOURS, runs).properties(
            title=f"{stage.capitalize()}: accuracy, the share of photos it gets right", height=height))
        charts.append(lines(data, x, loss_axis(), tip, SPLIT_COLOURS, runs).properties(
            title=f"{stage.capitalize()}: loss, how wrong it is (lower is better)", height=height))
    return charts


def panels(charts: list) -> alt.VConcatChart:
    """Charts stacked in one spec, so they appear together and share one legend; each keeps its own axes. Drawn
    stretched, each plot is as wide as the page's column and as tall as its `height` (one chart alone too)."""
    # no padding left or right: the plots already take the column's whole width
    return alt.vconcat(*charts, spacing=28, padding={"left": 0, "right": 0, "top": 6, "bottom": 20}).resolve_scale(
        x="independent", y="independent")


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
                        legend=alt.Legend(title="share of the real class", format=PERCENT, orient="bottom",
                                          direction="horizontal", gradientLength=max(120, side * len(class_names)))),
        tooltip=["real class:N", "model said:N", "photos:Q", alt.Tooltip("share:Q", format=PERCENT)],
    )
    counts = base.mark_text(fontSize=14).encode(
        text="photos:Q",
        color=alt.condition(alt.datum.share > 0.5, alt.value("white"), alt.value("#222")),
    )
    return alt.layer(cells, counts).properties(width=alt.Step(side), height=alt.Step(side))
