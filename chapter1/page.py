"""Chapter 1: Tokenization & Sampling. From your text to the model's next token, and again."""

import streamlit as st

from chapter1 import autoregression, filters, logits, pipeline, sampling, tokenizer
from token_by_token import model as models
from token_by_token import sections, state
from token_by_token.clicks import one_at_a_time

SECTIONS = [tokenizer, logits, filters, sampling, autoregression]
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
s = st.session_state

with st.sidebar:
    st.markdown(sections.links(SECTIONS))
    state.text_box()
    st.toggle("Autoregressive mode", key="autoregressive",
              on_change=pipeline.autoregression_toggled, args=(loaded,))


@st.fragment
def stepping() -> bool:
    """Sections 2–5 and Generate: a Generate click reruns only this part of the page."""
    if s["autoregressive"]:
        st.sidebar.button("Generate next token", key="generate", type="primary",
                          on_click=pipeline.generate_next, args=(loaded,),
                          disabled=pipeline.sequence(loaded, s).stop is not None,
                          help="Append the sampled token and run one cached forward step.")
    current = pipeline.view(loaded, s)  # the model runs here, when the ids changed
    drawn = sections.draw("Chapter 1", SECTIONS, loaded, current, part=slice(1, 2))
    sampling(drawn)
    if s["autoregressive"]:  # the step has run: the next click may come (clicks.py)
        with st.sidebar:
            one_at_a_time("generate", "Running the model for this token…")
    return drawn


@st.fragment
def sampling(with_sections: bool) -> None:
    """Sections 3–5 and the sampling controls: a slider, the seed or Resample rerun only
    this part of the page, and never the model."""
    with st.sidebar:
        st.subheader("Sampling")
        for key in state.SLIDERS:
            state.slider(key)
        st.button("Reset to Qwen3's defaults", on_click=state.reset_sampling)
        state.seed_input()
        st.button("Resample", key="resample", on_click=state.resample,
                  help="Draw again from the same probabilities.")
    if note := state.write_share_link(loaded):
        st.sidebar.caption(note)
    if with_sections:
        sections.draw("Chapter 1", SECTIONS, loaded, pipeline.view(loaded, s),
                      part=slice(2, None))


st.markdown("The whole chapter in one function, calling each section's lesson in order; "
            "the sections below take it apart:")
sections.lesson(pipeline.generate)
sections.draw("Chapter 1", SECTIONS, loaded, pipeline.text_view(loaded, s), part=slice(0, 1))
if stepping():
    st.header("Conclusion")
    st.markdown(
        "That is the whole of text generation: **tokenize** once, then loop **logits → "
        "filters and softmax → sample → append**. Everything a chat model writes comes out "
        "of this loop, one token at a time. What happens *inside* `model(...)`, the box this "
        "chapter treated as a function, is Chapter 2."
    )
