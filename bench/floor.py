"""The floor page of the browser benchmark: the app's sidebar controls and nothing else.

`streamlit run bench/floor.py`: the same widgets, keys and ranges as each chapter's sidebar
(Chapter 1 at /, Chapter 2 at /chapter-2, as in the app; Chapter 3's class sliders, drawn in its
main area, at /chapter-3), and a main area that only prints the choices. Whatever the app
takes beyond this page's time is the app's own cost (bench/browser.py measures both in one
run).
"""

import json
import os
import random
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from token_by_token import controls, state  # noqa: E402

ROWS = 64  # chapter2.patterns.ROWS (importing it would load torch: not on a floor page)
LEARNERS = 200  # chapter3.paged.MOST_LEARNERS
MAX_TOKENS = 1024  # token_by_token.model.MAX_TOKENS

st.set_page_config(page_title="Floor", layout="centered", initial_sidebar_state="expanded")
state.init()
s = st.session_state


def generate() -> None:
    s["generated"].append(random.randrange(1000))


def chapter1() -> None:
    """Chapter 1's sidebar, drawn by the same widget functions as the app's."""
    with st.sidebar:
        controls.text_box()
        controls.autoregressive_toggle()
        if s["autoregressive"]:
            controls.generate_button(generate)
        controls.sampling_controls(state.sampling_reset(None))

    st.title("Floor page")
    st.markdown(f"temperature = {s['temperature']:g}, top_k = {s['top_k']}, "
                f"top_p = {s['top_p']:g}, min_p = {s['min_p']:g}")
    st.markdown(f"seed = {s['seed']}, resamples = {s['resamples']}")
    st.markdown(f"{len(s['generated'])} generated so far")


@st.cache_resource
def model_facts():
    """The model's tokenizer (the `tokenizers` library alone) and its numbers of layers and
    heads, read from its files. Not transformers: importing it grows the heap by ~100,000
    objects, and Streamlit's full garbage collection after every run then costs ~0.1 s (the
    app sets its long-lived objects aside: token_by_token/model.py)."""
    from tokenizers import Tokenizer
    model = Path(os.environ["TOKEN_BY_TOKEN_MODEL"])
    config = json.loads((model / "config.json").read_text())
    return (Tokenizer.from_file(str(model / "tokenizer.json")), config["num_hidden_layers"],
            config["num_attention_heads"])


def chapter2() -> None:
    tokenizer, layers, heads = model_facts()
    with st.sidebar:
        controls.text_box()
    ids = tokenizer.encode(s["text"], add_special_tokens=False).ids

    @st.fragment
    def look_at() -> None:  # Chapter 2's controls, in a fragment as in the app
        with st.sidebar:
            controls.token_slider([f"{i}: {tokenizer.decode([t])}" for i, t in enumerate(ids)])
            controls.layer_slider(layers)
            controls.head_slider(heads)
            controls.rows_slider(ROWS)
            controls.halfway_toggle()
        st.markdown(f"layer = {s['layer']}, head = {s['head']}, position = {s['position']}, "
                    f"window = {s['window']}, halfway = {s['halfway']}")

    st.title("Floor page")
    look_at()


def chapter3() -> None:
    with st.sidebar:
        controls.text_box()
    st.title("Floor page")

    @st.fragment
    def a_class() -> None:  # section 6's sliders, in a fragment as in the app
        config = json.loads((Path(os.environ["TOKEN_BY_TOKEN_MODEL"]) / "config.json")
                            .read_text())
        controls.class_sliders(LEARNERS, min(MAX_TOKENS, config["max_position_embeddings"]))
        st.markdown(f"learners = {s['paged_learners']}, length = {s['paged_length']}, "
                    f"prefix = {s['paged_prefix']}")
    a_class()


st.navigation([st.Page(chapter1, title="Floor: Chapter 1", url_path="chapter-1", default=True),
               st.Page(chapter2, title="Floor: Chapter 2", url_path="chapter-2"),
               st.Page(chapter3, title="Floor: Chapter 3", url_path="chapter-3")]).run()
