"""Chapter 3: The Speed of Inference. Why the model runs at the speed it does on this machine,
and how servers make it faster, measured on the learner's own text."""

import streamlit as st

from chapter3 import CHAPTER
from chapter3.facts import refusal
from token_by_token import chapter, state
from token_by_token import model as models

st.title("Chapter 3: The Speed of Inference")
st.markdown(
    "Chapter 1 used the model as a function and Chapter 2 opened it. This chapter asks why it "
    "runs at the speed it does, and how servers make it faster. Nothing here is a figure from "
    "a slide: what a forward must compute and read is counted from the loaded model's weights, "
    "and what this machine can do is measured on it, with your text. Every section's code is "
    "the code that ran."
)
loaded = models.load_or_explain()
models.weights_or_stop(loaded, "times the model's weights")
if unknown := state.unknown_generated(loaded):  # from a share link
    st.warning(unknown)
if refused := refusal(loaded.model):
    st.info(refused, icon="🔒")
    st.stop()
if chapter.run(CHAPTER, loaded):
    st.header("Conclusion")
    st.markdown(
        "A decode step is bound by memory: it reads every weight to make one token. Everything "
        "servers do to go faster follows from that. **Batching** makes one reading of the "
        "weights serve many sequences; **quantization** makes the weights fewer bytes; "
        "**speculative decoding** makes one reading check several tokens; **FlashAttention** "
        "and the **paged KV cache** keep the memory that grows with the text (scores, keys "
        "and values) small and tightly packed, so that more sequences fit in a batch."
    )
