"""Chapter 1's sidebar: its blocks of controls, each with the choices it changes. The page
reruns, for each block, exactly the sections that read those choices
(token_by_token/chapter.py): the text and the modes rerun the page; Generate and Play
Sections 2–5; the sampling controls Sections 3–5, never the model."""

import streamlit as st
import torch

from chapter1 import pipeline
from token_by_token import controls, state
from token_by_token.chapter import Controls
from token_by_token.clicks import one_at_a_time
from token_by_token.sequence import has_chat_template, thinks
from token_by_token.tokens import annotated, markdown_literal, show, spans


def text_and_modes(loaded, view) -> None:
    controls.text_box()
    if has_chat_template(loaded.tokenizer):
        controls.chat_toggles(thinks(loaded.tokenizer))
    controls.autoregressive_toggle(pipeline.autoregression_toggled, (loaded,))


def while_downloading(loaded) -> None:
    """The sidebar while the weights download: the text and chat mode (Section 1 reads
    them), nothing that needs the model."""
    controls.text_box()
    if has_chat_template(loaded.tokenizer):
        controls.chat_toggles(thinks(loaded.tokenizer))


def stepping(loaded, view) -> None:
    """Generate and Play, in Autoregressive mode."""
    if not view.autoregressive:
        return
    finished = view.stop is not None
    controls.generate_button(pipeline.generate_next, (loaded,), finished)
    if controls.play_controls(finished):
        play(loaded, st.session_state["play_tokens"])


def stepped(loaded, view) -> None:
    """After the step has run: the next Generate click may come (token_by_token/clicks.py),
    and its step is taken while the learner reads (chapter1/ahead.py)."""
    if view.autoregressive:
        one_at_a_time("generate", "Running the model for this token…")
    pipeline.step_ahead(loaded, view)


def sampled(loaded, view) -> None:
    """After the sampling controls' sections: a step taken ahead for an id they no longer
    sample is let go (chapter1/ahead.py)."""
    pipeline.drop_stale_step(view)


def sampling(loaded, view) -> None:
    controls.sampling_controls(state.sampling_reset(loaded.model.generation_config))
    if note := state.write_share_link(loaded):
        st.caption(note)


CONTROLS = [
    Controls(state.TEXT_CHOICES, text_and_modes),
    Controls(frozenset({"generated"}), stepping, after=stepped),
    Controls(state.SAMPLE, sampling, after=sampled),
]

LIVE = 16  # tokens the live box shows while Play runs


def play(loaded, tokens: int) -> None:
    """Play: the tokens stream into a live box under the Play button, in view wherever the
    learner has scrolled (and the sidebar's Stop shows); then the page draws the sequence
    they made, as after as many Generate clicks."""
    live = st.empty()

    def show_progress(view) -> None:
        with live.container(border=True):
            st.html("<style>.st-key-stop { display: block !important; }</style>")
            st.markdown(f"**Playing: {len(view.generated):,} generated so far**")
            ids = [*view.ids, view.next_id]
            first = max(len(ids) - LIVE, 0)
            annotated(spans(loaded.tokenizer, ids[first:], highlight=len(view.ids),
                            generated_from=len(view.ids) - len(view.generated), first=first))
            top = torch.topk(view.probs, 5)
            st.caption("Next: " + ", ".join(
                f"“{markdown_literal(show(loaded.tokenizer, int(i)))}” {float(p):.0%}"
                for p, i in zip(top.values, top.indices, strict=True)))

    pipeline.play(loaded, st.session_state.to_dict(), tokens, show_progress)
    st.rerun()  # the buttons and sections, drawn for the new sequence
