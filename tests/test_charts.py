"""Chart builders are pure: data in, alt.Chart out; any token text is just data."""

import json

import pandas as pd

from chapter1.filters import bars_table, probabilities, warpers
from chapter1.logits import Candidates, heatmap_table
from token_by_token import charts
from token_by_token.tokens import show

NASTY = ["'", '"', "\\", "{", "}", "{{x}}", "<b>", "datum.x", "$x$", "␣"]


def test_heatmap_keeps_nasty_token_text_as_data():
    table = pd.DataFrame({
        "position": range(len(NASTY)), "input token": NASTY, "rank": [1] * len(NASTY),
        "predicted token": NASTY[::-1], "logit": [1.0] * len(NASTY),
        "probability": [0.5] * len(NASTY), "shade": [1.0] * len(NASTY),
    })
    spec = charts.logits_heatmap(table).to_dict()
    values = json.dumps(spec)
    for token in NASTY:
        assert json.dumps(token)[1:-1] in values
    assert spec["height"] == 28 * len(NASTY)


def test_heatmap_table_from_a_forward(loaded):
    ids = loaded.tokenizer.encode("a 'quoted' {brace} \\ text", add_special_tokens=False)
    from chapter1.logits import logits
    rows = logits(loaded.model, ids)
    table = heatmap_table(loaded.tokenizer, ids, Candidates.of(rows), rows=4, count=3)
    assert len(table) == 4 * 3
    assert table["position"].tolist() == [p for p in range(len(ids) - 4, len(ids))
                                          for _ in range(3)]
    assert (table.groupby("position")["shade"].max() == 1.0).all()  # normalised per row
    charts.logits_heatmap(table).to_json()
    full = charts.logits_heatmap(table, row_height=30).to_dict()
    fast = charts.fast_spec(charts.logits_heatmap, table, height=30 * 4)  # the page's path
    assert fast == {k: v for k, v in full.items() if k not in ("data", "datasets")}


def test_probability_bars_mark_the_sampled_token_even_outside_the_top(loaded):
    ids = loaded.tokenizer.encode("The fox", add_special_tokens=False)
    from chapter1.logits import logits
    last = logits(loaded.model, ids)[-1]
    probs = probabilities(last, warpers(2.0, 0, 1.0, 0.0))
    rare = int(last.argmin())
    table = bars_table(loaded.tokenizer, last, probs, rare, count=5)
    assert table["token"].nunique() == 6
    label = f"{show(loaded.tokenizer, rare)}  ({rare})"
    assert table[table["sampled"]]["token"].tolist() == [label]
    assert table["token"].iloc[-1] == label  # appended after the top 5
    assert table["original"].iloc[:5].is_monotonic_decreasing
    charts.probability_bars(table).to_json()
    spec = charts.fast_spec(charts.probability_bars, table)  # the page's path: data apart
    full = charts.probability_bars(table).to_dict()
    assert spec == {k: v for k, v in full.items() if k not in ("data", "datasets")}
