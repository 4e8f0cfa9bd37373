"""Chapter 1: Tokenization & Sampling. From your text to the model's next token, and again."""

import streamlit as st

from chapter1 import CHAPTER, pipeline
from token_by_token import chapter, sections, state
from token_by_token import model as models

PIPELINE = """
digraph {
  rankdir=LR; node [shape=box, style="rounded,filled", fillcolor="#eef1fb", color="#000080",
  fontname="sans-serif"]; edge [color="#000080", fontname="sans-serif", fontsize=10];
  text [label="text"]; ids [label="token ids"]; logits [label="logits"];
  probs [label="probabilities"]; next [label="next id"];
  text -> ids [label="1 tokenize"]; ids -> logits [label="2 model"];
  logits -> probs [label="3 filters + softmax"]; probs -> next [label="4 sample"];
  next -> ids [label="5 append", style=dashed, constraint=false];
}
"""

st.title("Chapter 1: Tokenization & Sampling")
st.markdown(
    "A language model is a function from a list of integers to a table of scores. Everything "
    "else is plumbing around that function: turning your text into integers, turning scores "
    "into a choice, and feeding the choice back in. This chapter walks that loop one step "
    "at a time, on a real model, showing the exact code that runs at each step."
)
st.graphviz_chart(PIPELINE)

loaded = models.load_or_explain()
if unknown := state.unknown_generated(loaded):  # from a share link
    st.warning(unknown)
st.markdown("The whole chapter in one function, calling each section's lesson in order; "
            "the sections below take it apart:")
sections.lesson(pipeline.generate)
if chapter.run(CHAPTER, loaded):
    st.header("Conclusion")
    st.markdown(
        "That is the whole of text generation: **tokenize** once, then loop **logits → "
        "filters and softmax → sample → append**. Everything a chat model writes comes out "
        "of this loop, one token at a time. What happens *inside* `model(...)`, the box this "
        "chapter treated as a function, is Chapter 2."
    )
