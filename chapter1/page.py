"""Chapter 1: Tokenization & Sampling. From your text to the model's next token, and again."""

import streamlit as st
import torch

from chapter1 import autoregression, filters, logits, pipeline, sampling, tokenizer
from token_by_token import model as models
from token_by_token import sections, state
from token_by_token.clicks import one_at_a_time
from token_by_token.tokens import annotated, markdown_literal, spans
from token_by_token.tokens import show as show_token

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
if unknown := state.unknown_generated(loaded):  # from a share link
    st.warning(unknown)
s = st.session_state

with st.sidebar:
    st.markdown(sections.links(SECTIONS))
    state.text_box()
    if tokenizer.has_chat_template(loaded.tokenizer):
        st.toggle("Chat mode", key="chat", disabled=s["autoregressive"],
                  help="Send your text as a chat app does: a user message in the model's "
                       "chat template. Locked while Autoregressive mode is on.")
        if tokenizer.thinks(loaded.tokenizer):
            st.toggle("Thinking", key="thinking", disabled=s["autoregressive"] or not s["chat"],
                      help="The chat template's enable_thinking. Off: the template itself ends "
                           "the ids with an empty <think></think> block, so the model answers "
                           "at once. On: the block is left to the model, to reason in first.")
    st.toggle("Autoregressive mode", key="autoregressive",
              on_change=pipeline.autoregression_toggled, args=(loaded,))
    if s["autoregressive"]:  # outside the fragments: its click stops a running Play (a
        # fragment's own widgets would wait for the run to end); hidden unless Play runs
        st.button("Stop", key="stop", help="Stop playing; every token so far is kept.")
        st.html("<style>.st-key-stop { display: none; }</style>")


@st.fragment
def stepping() -> bool:
    """Sections 2–5 and Generate: a Generate click reruns only this part of the page."""
    playing = False
    if s["autoregressive"]:
        finished = pipeline.sequence(loaded, s).stop is not None
        st.sidebar.button("Generate next token", key="generate", type="primary",
                          on_click=pipeline.generate_next, args=(loaded,), disabled=finished,
                          help="Append the sampled token and run one cached forward step.")
        with st.sidebar.container(horizontal=True, vertical_alignment="bottom"):
            st.number_input("Tokens to play", 1, 200, key="play_tokens")
            playing = st.button("Play", key="play", disabled=finished,
                                help="Generate that many tokens, one cached step each, "
                                     "streamed into the page.")
    if playing:
        play(s["play_tokens"])
    current = pipeline.view(loaded, s)  # the model runs here, when the ids changed
    # A nested fragment is known by where it is called: call it from a place made before
    # Section 2, whose length varies (its rows slider comes with the second token), or its
    # sidebar would have no reserved place in this fragment's reruns (a Streamlit error)
    section2, rest = st.container(), st.container()
    with section2:
        drawn = sections.draw("Chapter 1", SECTIONS, loaded, current, part=slice(1, 2))
    with rest:
        sampling(drawn, tuple(current.ids))
    if s["autoregressive"]:  # the step has run: the next click may come (clicks.py)
        with st.sidebar:
            one_at_a_time("generate", "Running the model for this token…")
    return drawn


LIVE = 16  # tokens the live box shows while Play runs


def play(tokens: int) -> None:
    """Play: the tokens stream into a live box under the Play button, in view wherever the
    learner has scrolled (and the sidebar's Stop shows); then the page draws the sequence
    they made, as after as many Generate clicks."""
    live = st.sidebar.empty()

    def show(view) -> None:
        with live.container(border=True):
            st.html("<style>.st-key-stop { display: block !important; }</style>")
            st.markdown(f"**Playing: {len(view.generated):,} generated so far**")
            ids = [*view.ids, view.next_id]
            first = max(len(ids) - LIVE, 0)
            annotated(spans(loaded.tokenizer, ids[first:], highlight=len(view.ids),
                            generated_from=len(view.ids) - len(view.generated), first=first))
            top = torch.topk(view.probs, 5)
            st.caption("Next: " + ", ".join(
                f"“{markdown_literal(show_token(loaded.tokenizer, int(i)))}” {float(p):.0%}"
                for p, i in zip(top.values, top.indices, strict=True)))

    pipeline.play(loaded, s.to_dict(), tokens, show)
    st.rerun()  # the buttons and sections, drawn for the new sequence


@st.fragment
def sampling(with_sections: bool, ids: tuple[int, ...]) -> None:
    """Sections 3–5 and the sampling controls: a slider, the seed or Resample rerun only
    this part of the page, and never the model. An action here that changed the ids (a
    branch, in Section 5) reruns the whole page: Section 2 shows them too."""
    with st.sidebar:
        st.subheader("Sampling")
        for key in state.SLIDERS:
            state.slider(key)
        reset = state.sampling_reset(loaded.model.generation_config)
        st.button(reset.label, key="reset", help=reset.help, on_click=state.reset_sampling,
                  args=(reset.values,))
        state.seed_input()
        st.button("Resample", key="resample", on_click=state.resample,
                  help="Draw again from the same probabilities.")
    if note := state.write_share_link(loaded):
        st.sidebar.caption(note)
    if with_sections:
        current = pipeline.view(loaded, s)
        if tuple(current.ids) != ids:
            st.rerun()
        sections.draw("Chapter 1", SECTIONS, loaded, current, part=slice(2, None))


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
