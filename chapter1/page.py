"""Chapter 1: Tokenization & Sampling. From your text to the model's next token, and again."""

import streamlit as st

from chapter1 import tokenizer
from token_by_token import model as models
from token_by_token import state

st.title("Chapter 1: Tokenization & Sampling")
st.markdown(
    "A language model is a function from a list of integers to a table of scores. Everything "
    "else is plumbing around that function: turning your text into integers, turning scores "
    "into a choice, and feeding the choice back in. This chapter walks that loop one step "
    "at a time, on a real model, showing the exact code that runs at each step."
)

loaded = models.load_or_explain()

with st.sidebar:
    st.text_area("Your text", key="text", on_change=state.text_edited, height=120,
                 help="Everything on this page is computed from this text.")

ids = tokenizer.tokenize(loaded.tokenizer, st.session_state["text"])
cut = max(len(ids) - loaded.max_tokens, 0)
ids = ids[: loaded.max_tokens]

tokenizer.render(loaded, st.session_state["text"], ids, cut)

for number, title in [(2, "Logits"), (3, "Filters and softmax"), (4, "Sampling"),
                      (5, "Autoregression")]:
    st.header(f"{number}. {title}")
    st.info("Coming next.")

state.write_share_link()
