"""Chapter 2: Inside the Model. Qwen3's forward pass, rebuilt from its own weights."""

import streamlit as st

from chapter1 import pipeline
from chapter2 import (
    architecture,
    attention,
    embeddings,
    inside,
    kvcache,
    lens,
    mlp,
    patterns,
    rebuild,
    rmsnorm,
    stream,
)
from token_by_token import model as models
from token_by_token import sections, state
from token_by_token.memo import memo_of
from token_by_token.precision import name
from token_by_token.tokens import counted, show

SECTIONS = [embeddings, rmsnorm, attention, mlp, rebuild, patterns, lens, stream, kvcache]
LAYER = """
digraph {
  rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#eef1fb", color="#000080",
  fontname="sans-serif"]; edge [color="#000080", fontname="sans-serif", fontsize=10];
  ids [label="token ids"]; embed [label="1 embed"]; x [label="x", shape=circle];
  n1 [label="2 RMSNorm"]; attn [label="3 attention"]; n2 [label="2 RMSNorm"];
  mlp [label="4 MLP"]; final [label="RMSNorm"]; logits [label="logits"];
  ids -> embed -> x; x -> n1 -> attn; attn -> x [label="+", style=dashed];
  x -> n2 -> mlp; mlp -> x [label="+", style=dashed];
  x -> final [label="after the last layer"]; final -> logits [label="5 × tableᵀ"];
}
"""

st.title("Chapter 2: Inside the Model")
loaded = models.load_or_explain()
if unknown := state.unknown_generated(loaded):  # from a share link
    st.warning(unknown)
if refused := architecture.refusal(loaded.model):
    st.info(refused.message, icon="🔒")
    st.stop()
facts = inside.Facts.of(loaded.model)
s = st.session_state
st.markdown(
    "Chapter 1 treated `model(ids)` as a function from token ids to a table of scores. This "
    "chapter opens it. The whole forward pass of Qwen3 is a handful of short functions, run "
    "here on the loaded model's own weights, and composing them gives the library's logits: "
    "bit for bit against its plain (eager) attention, and to the last bits of "
    f"{name(facts.dtype)} against the fused attention it runs by default (section 5 shows "
    f"how far). This model has **{facts.layers} layers**. Each one reads a vector of "
    f"{facts.hidden:,} numbers per position, the **residual stream** `x`, and adds two edits "
    "to it: one from attention, one from the MLP. Every value below is checked against what "
    "the library's own modules computed for your text, and each difference is told in the "
    f"steps of {name(facts.dtype)}: how far apart its neighbouring numbers are at that size."
)
st.graphviz_chart(LAYER)

with st.sidebar:
    st.markdown(sections.links(SECTIONS))
    state.text_box()
ids = pipeline.sequence(loaded, s).ids  # the same ids as Chapter 1: text, then generated


def token_control() -> bool:
    """The Token control, drawn by the page run (most sections read the token: moving it
    redraws them all), after the other controls' values are checked against this model.
    False, after saying why, when there are no ids."""
    if not ids:
        st.info("Type some text in the sidebar: the model needs at least one token.")
        return False
    for key, count in (("layer", facts.layers), ("head", facts.heads)):
        if s.get(key) is None or not 0 <= s[key] < count:
            s[key] = 0
    if s.get("position") is None or not 0 <= s["position"] < len(ids):
        s["position"] = len(ids) - 1
    with st.sidebar:
        st.subheader("Look at")
        st.select_slider("Token", options=range(len(ids)), key="position",
                         format_func=lambda i: f"{i}: {show(loaded.tokenizer, ids[i])}",
                         help="The position whose values the sections show.")
    return True


def view_of(seen, pattern=None) -> inside.View:
    return inside.View(ids, facts, seen, seen.layers[s["layer"]], pattern, s["head"],
                       s["position"], s["window"], s["halfway"])


@st.fragment
def one_layer(seen, memo, places) -> None:
    """Sections 2-6 (the picked layer opened up, its attention patterns) and their controls:
    a layer, a head or the rows shown rerun only these sections, and never the model."""
    with st.sidebar:
        st.slider("Layer", 0, facts.layers - 1, key="layer",
                  help="The layer that sections 2 to 6 open up.")
        st.slider("Query head", 0, facts.heads - 1, key="head",
                  help="The attention head whose weights sections 3 and 6 show.")
        st.slider("Attention rows shown", 4, inside.ROWS, key="window",
                  help="How many query positions, ending at the token, section 6 draws.")
    with places[1], st.spinner(f"Attention weights of layer {s['layer']}…", show_time=True):
        pattern = inside.pattern_of(loaded.model, seen, s["layer"], s["position"], memo)
    view = view_of(seen, pattern)
    for number in range(2, 7):
        with places[number - 1]:
            sections.draw("Chapter 2", SECTIONS, loaded, view, part=slice(number - 1, number))


@st.fragment
def lens_of(seen, place) -> None:
    """Section 7 and its toggle: the toggle reruns only this section."""
    with st.sidebar:
        st.toggle("Halfway through each layer", key="halfway",
                  help="Section 7's logit lens also reads the stream between attention and "
                       "the MLP.")
    with place:
        sections.draw("Chapter 2", SECTIONS, loaded, view_of(seen), part=slice(6, 7))


if token_control():
    memo = memo_of(s).for_model(loaded.model_id)
    places = [st.container() for _ in SECTIONS]  # each section's place on the page, in order
    if memo.get(inside.INSIDE, tuple(ids)) is None:  # new ids: the forward runs
        with places[0], st.spinner(f"Running the model on your {counted(len(ids), 'token')} "
                                   "twice: by the library, then by hand with the lesson "
                                   "functions…", show_time=True):
            seen = inside.look_inside(loaded.model, ids, memo)
    else:
        seen = inside.look_inside(loaded.model, ids, memo)
    one_layer(seen, memo, places)
    lens_of(seen, places[6])
    for number in (1, 8, 9):  # they read the token only: drawn by the full page run
        with places[number - 1]:
            sections.draw("Chapter 2", SECTIONS, loaded, view_of(seen),
                          part=slice(number - 1, number))
    st.header("Conclusion")
    st.markdown(
        "That is the whole model: **embed**, then in every layer **x = x + "
        "attention(norm(x))** and **x = x + mlp(norm(x))**, then one last **norm** and a "
        "product with the embedding table. Attention is the only place where positions "
        "mix; everything else works on each position alone. Section 6 showed where it "
        "looks, section 7 how the guess forms layer by layer, section 8 what each layer "
        "adds to it."
    )
