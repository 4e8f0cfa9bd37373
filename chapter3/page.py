"""Chapter 3: The Speed of Inference. Why the model runs at the speed it does on this machine,
and how servers make it faster, measured on the learner's own text."""

import streamlit as st

from chapter1 import pipeline
from chapter3 import SECTIONS
from chapter3 import view as views
from token_by_token import model as models
from token_by_token import sections, state
from token_by_token.memo import memo_of
from token_by_token.tokens import counted

st.title("Chapter 3: The Speed of Inference")
st.markdown(
    "Chapter 1 used the model as a function and Chapter 2 opened it. This chapter asks why it "
    "runs at the speed it does, and how servers make it faster. Nothing here is a figure from "
    "a slide: what a forward must compute and read is counted from the loaded model's weights, "
    "and what this machine can do is measured on it, with your text. Every section's code is "
    "the code that ran."
)
loaded = models.load_or_explain()
s = st.session_state
with st.sidebar:
    st.markdown(sections.links(SECTIONS))
    state.text_box()
ids = pipeline.sequence(loaded, s).ids  # the same ids as Chapters 1 and 2


def repair(layers: int) -> None:
    """Choices whose range depends on the model (another model may have been loaded since
    they were made): back into this model's range, before their widgets are drawn."""
    cap = loaded.max_tokens
    if s["spec_layers"] is None or not 1 <= s["spec_layers"] <= max(layers - 1, 1):
        s["spec_layers"] = max(layers // 2, 1)
    for key, low, high in (("batch_length", 1, cap), ("paged_length", 1, cap),
                           ("paged_prefix", 0, cap)):
        if not low <= s[key] <= high:
            s[key] = min(max(s[key], low), high)


@st.fragment
def section(number: int, base: views.Base, memo) -> None:
    """One section and its own controls: a control reruns only its section. What the section
    needs that is not known yet (a measurement, a run of the model) is computed here."""
    module = SECTIONS[number - 1]
    with st.spinner(f"Section {number}: measuring and computing…", show_time=True):
        view = module.prepare(loaded, base, s, memo)
    sections.draw("Chapter 3", SECTIONS, loaded, view, part=slice(number - 1, number))


if not ids:
    st.info("Type some text in the sidebar: the model needs at least one token.")
else:
    memo = memo_of(s).for_model(loaded.model_id)
    with st.spinner(f"Running the model on your {counted(len(ids), 'token')}…", show_time=True):
        base = views.base(loaded, ids, memo)
    repair(base.facts.layers)
    st.caption(f"Measured on this machine: {base.machine.describe()}; the model in "
               f"{str(loaded.model.dtype).removeprefix('torch.')}. Measurements are taken once "
               "per server process and size, and again when you press a section's Measure "
               "again.")
    for number in range(1, len(SECTIONS) + 1):
        section(number, base, memo)
    st.header("Conclusion")
    st.markdown(
        "A decode step is bound by memory: it reads every weight to make one token. Everything "
        "servers do to go faster follows from that. **Batching** makes one reading of the "
        "weights serve many sequences; **quantization** makes the weights fewer bytes; "
        "**speculative decoding** makes one reading check several tokens; **FlashAttention** "
        "and the **paged KV cache** keep the memory that grows with the text (scores, keys "
        "and values) small and tightly packed, so that more sequences fit in a batch."
    )
