"""Chapter 2: Inside the Model. The forward pass of a Llama-family model (Llama, Mistral, Qwen2,
Qwen3), rebuilt from its own weights."""

import streamlit as st

from chapter2 import CHAPTER, architecture, lens, patterns, rebuild, stream
from chapter2.facts import Facts
from token_by_token import chapter, state
from token_by_token import model as models
from token_by_token.precision import name
from token_by_token.sections import number

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
models.weights_or_stop(loaded, "opens the model's weights")
if unknown := state.unknown_generated(loaded):  # from a share link
    st.warning(unknown)
if refused := architecture.refusal(loaded.model):
    st.info(refused.message, icon="🔒")
    st.stop()
facts = Facts.of(loaded.model)
st.markdown(
    "Chapter 1 treated `model(ids)` as a function from token ids to a table of scores. This "
    f"chapter opens it. The whole forward pass of {architecture.family(loaded.model)} "
    "(`" + type(loaded.model).__name__ + "`) is a handful of short functions, run "
    "here on the loaded model's own weights, and composing them gives the library's logits: "
    "bit for bit against its plain (eager) attention, and to the last bits of "
    f"{name(facts.dtype)} against the fused attention it runs by default (section "
    f"{number(rebuild)} shows how far). This model has **{facts.layers} layers**. Each one "
    "reads a vector of "
    f"{facts.hidden:,} numbers per position, the **residual stream** `x`, and adds two edits "
    "to it: one from attention, one from the MLP. Every value below is checked against what "
    "the library's own modules computed for your text, and each difference is told in the "
    f"steps of {name(facts.dtype)}: how far apart its neighbouring numbers are at that size."
)
st.graphviz_chart(LAYER)
st.markdown("**What this model's layers have**, read from its config and modules (the "
            "sections below run the same lesson functions for every model of the family, "
            "with these steps or without them):\n"
            + "".join(f"\n- {feature}" for feature in architecture.features(loaded.model)))

if chapter.run(CHAPTER, loaded):
    st.header("Conclusion")
    st.markdown(
        "That is the whole model: **embed**, then in every layer **x = x + "
        "attention(norm(x))** and **x = x + mlp(norm(x))**, then one last **norm** and a "
        "product with the embedding table. Attention is the only place where positions "
        "mix; everything else works on each position alone. "
        f"Section {number(patterns)} showed where it looks, section {number(lens)} how the "
        f"guess forms layer by layer, section {number(stream)} what each layer adds to it."
    )
