"""Altair chart builders: data in, alt.Chart out (and weight_colours: the attention scale's
colours, for a picture drawn without Vega-Lite). Pure, so tests can build them directly.

Token text is always data (values), never part of a field name or an expression, so quotes,
backslashes and braces in tokens are safe.
"""

import copy
from functools import cache

import altair as alt
import numpy as np
import pandas as pd

NAVY = "#000080"
GREY = "#b8bfd8"
LIGHT = "#eef1fb"  # an attention weight of 0: near the page's white, so the mask reads empty


def rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


def weight_colours(weights: np.ndarray) -> np.ndarray:
    """RGB bytes [..., 3] of attention weights in [0, 1]: LIGHT at 0 to NAVY at 1, straight
    through RGB, as the heatmap's WEIGHTS scale draws them (one lightness ramp: readable
    with any colour vision). For pictures drawn without Vega-Lite (all heads at once)."""
    light, navy = rgb(LIGHT), rgb(NAVY)
    return np.rint(light + weights[..., None].clip(0, 1) * (navy - light)).astype(np.uint8)


WEIGHTS = alt.Scale(range=[LIGHT, NAVY], interpolate="rgb", domain=[0, 1])


def logits_heatmap(table: pd.DataFrame, row_height: int = 28) -> alt.Chart:
    """Positions as rows, top candidates as cells; colour = probability relative to the
    row's favourite. `table`: position, input token, rank, predicted token, logit,
    probability, shade (see chapter1.logits.heatmap_table)."""
    base = alt.Chart(table).transform_calculate(
        row="datum.position + ': ' + datum['input token']",  # token text stays data
    ).encode(
        x=alt.X("rank:O", title="rank of the candidate (1 = most likely)",
                axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("row:N", sort=alt.EncodingSortField("position", op="min"),
                title="position: input token", axis=alt.Axis(labelLimit=160)),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("shade:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]),
                        legend=None),
        tooltip=[
            alt.Tooltip("position:Q"), alt.Tooltip("input token:N"),
            alt.Tooltip("predicted token:N"), alt.Tooltip("logit:Q", format=".3f"),
            alt.Tooltip("rank:O"), alt.Tooltip("probability:Q", format=".2%"),
        ],
    )
    labels = base.mark_text(fontSize=11, limit=70).encode(
        text="predicted token:N",
        color=alt.condition("datum.shade > 0.55", alt.value("white"), alt.value("black")),
    )
    return (cells + labels).properties(height=row_height * table["position"].nunique())


def probability_bars(table: pd.DataFrame) -> alt.Chart:
    """Two probabilities per candidate, side by side; the sampled token outlined.

    `table`: token (unique label, in display order), the two probabilities (e.g. original
    and after filters; their column names are the legend), sampled (bool)."""
    kinds = [c for c in table.columns if c not in ("token", "sampled")]
    return alt.Chart(table).transform_window(
        order="row_number()",  # keep the table's order on the axis
    ).transform_fold(kinds, as_=["distribution", "probability"]).mark_bar().encode(
        y=alt.Y("token:N", sort=alt.EncodingSortField("order"), title=None,
                axis=alt.Axis(labelLimit=180)),
        x=alt.X("probability:Q", axis=alt.Axis(format="%"), title="probability"),
        yOffset=alt.YOffset("distribution:N", sort=kinds),
        color=alt.Color("distribution:N", sort=kinds,
                        scale=alt.Scale(domain=kinds, range=[GREY, "#4a63c8"]),
                        legend=alt.Legend(orient="bottom", title=None)),
        stroke=alt.condition("datum.sampled", alt.value(NAVY), alt.value(None)),
        strokeWidth=alt.condition("datum.sampled", alt.value(3), alt.value(0)),
        tooltip=[alt.Tooltip("token:N"), alt.Tooltip("distribution:N"),
                 alt.Tooltip("probability:Q", format=".3%")],
    ).properties(height=alt.Step(11))


def attention_heatmap(table: pd.DataFrame) -> alt.Chart:
    """Query rows × key columns of one head; colour = weight (WEIGHTS, as
    weight_colours). `table`: query, key, query token, key token, weight."""
    return alt.Chart(table).mark_rect().encode(
        x=alt.X("key token:N", sort=alt.EncodingSortField("key", op="min"), title="key",
                axis=alt.Axis(labelAngle=-60, labelLimit=90, orient="top")),
        y=alt.Y("query token:N", sort=alt.EncodingSortField("query", op="min"),
                title="query", axis=alt.Axis(labelLimit=120)),
        color=alt.Color("weight:Q", scale=WEIGHTS,
                        legend=alt.Legend(orient="bottom", format="%")),
        tooltip=[alt.Tooltip("query token:N"), alt.Tooltip("key token:N"),
                 alt.Tooltip("weight:Q", format=".2%")],
    )


def layer_bars(table: pd.DataFrame) -> alt.Chart:
    """One value per layer and kind of update, side by side. `table`: layer, update, value."""
    kinds = ["attention", "MLP"]
    return alt.Chart(table).mark_bar().encode(
        x=alt.X("layer:O", title="layer", axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("update:N", sort=kinds),
        y=alt.Y("value:Q", title="norm of the update"),
        color=alt.Color("update:N", sort=kinds,
                        scale=alt.Scale(domain=kinds, range=["#4a63c8", "#e69f00"]),
                        legend=alt.Legend(orient="bottom", title=None)),
        tooltip=[alt.Tooltip("layer:O"), alt.Tooltip("update:N"),
                 alt.Tooltip("value:Q", format=".3g")],
    )


def lens_grid(table: pd.DataFrame) -> alt.Chart:
    """The logit lens: positions as columns, depths as rows (the model's order, top to
    bottom), the top-1 token written in each cell; colour = its probability. `table`:
    position, token, order, read from, top-1, probability, top 5."""
    base = alt.Chart(table).encode(
        x=alt.X("token:N", sort=alt.EncodingSortField("position", op="min"), title=None,
                axis=alt.Axis(labelAngle=-40, labelLimit=110, orient="top")),
        y=alt.Y("read from:N", sort=alt.EncodingSortField("order", op="min"), title=None,
                axis=alt.Axis(labelLimit=140)),
    )
    cells = base.mark_rect(stroke="white").encode(
        color=alt.Color("probability:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]),
                        legend=alt.Legend(orient="bottom", format="%")),
        tooltip=[alt.Tooltip("token:N", title="position"), alt.Tooltip("read from:N"),
                 alt.Tooltip("top-1:N"), alt.Tooltip("probability:Q", format=".1%"),
                 alt.Tooltip("top 5:N")],
    )
    labels = base.mark_text(fontSize=10, limit=80).encode(
        text="top-1:N",
        color=alt.condition("datum.probability > 0.55", alt.value("white"), alt.value("black")),
    )
    return cells + labels


def uncertainty_timeline(table: pd.DataFrame) -> alt.Chart:
    """Per generated token: entropy and surprisal in bits (lines), the end-of-text
    probability below. `table`: step, token, entropy (bits), surprisal (bits),
    end-of-text probability, and the rest of autoregression.timeline_table."""
    kinds = ["entropy (bits)", "surprisal (bits)"]
    x = alt.X("step:Q", title="generated token", axis=alt.Axis(tickMinStep=1))
    tips = [alt.Tooltip("step:Q"), alt.Tooltip("token:N"),
            alt.Tooltip("probability:Q", format=".2%"), alt.Tooltip("rank:Q"),
            alt.Tooltip("entropy (bits):Q", format=".2f"),
            alt.Tooltip("surprisal (bits):Q", format=".2f"),
            alt.Tooltip("end-of-text probability:Q", format=".2%")]
    bits = alt.Chart(table).transform_fold(kinds, as_=["measure", "bits"]).mark_line(
        point=True).encode(
        x=x, y=alt.Y("bits:Q", title="bits"),
        color=alt.Color("measure:N", sort=kinds,
                        scale=alt.Scale(domain=kinds, range=["#4a63c8", "#e69f00"]),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=tips,
    ).properties(height=160)
    end = alt.Chart(table).mark_bar(color=NAVY).encode(
        x=x, y=alt.Y("end-of-text probability:Q", title="P(end of text)",
                      axis=alt.Axis(format="%")),
        tooltip=tips,
    ).properties(height=60)
    return alt.vconcat(bits, end)


@cache
def _template(build, columns: tuple[str, ...]) -> dict:
    """The spec `build` makes, without its data: built and validated by Altair once."""
    spec = build(pd.DataFrame({column: [] for column in columns})).to_dict()
    spec.pop("datasets", None)
    spec.pop("data", None)
    return spec


def fast_spec(build, table: pd.DataFrame, **properties) -> dict:
    """build(table).to_dict() without the data, for st.vega_lite_chart(table, spec): the
    chart's spec depends on the data only through its values (and `properties`, such as
    the height), so a rerun doesn't pay for building and validating it again."""
    return {**copy.deepcopy(_template(build, tuple(table.columns))), **properties}


def roofline(table: pd.DataFrame) -> alt.Chart:
    """The roofline, log-log: arithmetic intensity (FLOPs per byte read) against the FLOP/s
    reached; the memory roof and the compute roof as lines, each timed forward as a point.
    `table`: mark ("roof" or "measured"), what, kind, FLOPs per byte, GFLOP/s."""
    x = alt.X("FLOPs per byte:Q", scale=alt.Scale(type="log"),
              title="arithmetic intensity (FLOPs per byte read)")
    y = alt.Y("GFLOP/s:Q", scale=alt.Scale(type="log"), title="GFLOP/s reached")
    tips = [alt.Tooltip("what:N"), alt.Tooltip("FLOPs per byte:Q", format=",.3g"),
            alt.Tooltip("GFLOP/s:Q", format=",.3g")]
    base = alt.Chart(table).encode(x=x, y=y, tooltip=tips)
    roofs = base.transform_filter("datum.mark == 'roof'").mark_line(
        color=NAVY, strokeWidth=2).encode(detail="what:N")
    kinds = ["decode", "batch", "prefill"]
    points = base.transform_filter("datum.mark == 'measured'").mark_point(
        filled=True, size=80).encode(
        color=alt.Color("kind:N", sort=kinds, scale=alt.Scale(
            domain=kinds, range=["#e69f00", "#009e73", "#4a63c8"]),
            legend=alt.Legend(orient="bottom", title=None)),
        shape=alt.Shape("kind:N", sort=kinds, legend=None))
    return (roofs + points).properties(height=320)


def batching(table: pd.DataFrame) -> alt.Chart:
    """Tokens per second against the batch size, measured (bars), beside what a batch would
    give if its step cost as many steps of one (the line). `table`: batch size B, tokens/s,
    tokens/s if a step of B cost B steps of 1, and more columns (for the tooltip)."""
    x = alt.X("batch size B:O", axis=alt.Axis(labelAngle=0))
    tips = [alt.Tooltip("batch size B:O"), alt.Tooltip("ms per step:Q", format=",.1f"),
            alt.Tooltip("tokens/s:Q", format=",.1f")]
    bars = alt.Chart(table).mark_bar(color="#4a63c8").encode(
        x=x, y=alt.Y("tokens/s:Q", title="tokens per second"), tooltip=tips)
    same = alt.Chart(table).mark_line(color=NAVY, strokeDash=[4, 3], point=True).encode(
        x=x, y="tokens/s if a step of B cost B steps of 1:Q", tooltip=tips)
    return (bars + same).properties(height=220)


def memory_bars(table: pd.DataFrame) -> alt.Chart:
    """One horizontal bar per way of allocating memory. `table`: allocation, then the amount
    in a unit that names its column (GB, MB, …), then anything else."""
    unit = table.columns[1]
    return alt.Chart(table).mark_bar(color="#4a63c8").encode(
        y=alt.Y("allocation:N", sort=None, title=None, axis=alt.Axis(labelLimit=320)),
        x=alt.X(f"{unit}:Q", title=unit),
        tooltip=[alt.Tooltip("allocation:N"), alt.Tooltip(f"{unit}:Q", format=",.3f")],
    ).properties(height=alt.Step(28))
