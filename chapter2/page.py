"""Chapter 2: Inside the Model — an honest outline of what is coming."""

import streamlit as st

st.title("Chapter 2: Inside the Model")
st.info("This chapter is not written yet. Here is what it will open up.")
st.markdown(
    "Chapter 1 treats the model as a black box: token ids in, one row of scores per position "
    "out. Chapter 2 opens the box, one step at a time, on the same text and the same model:\n\n"
    "1. **Embeddings.** Each token id picks a row of a learned table: a list of 1,024 numbers "
    "for Qwen3-0.6B. Tokens used alike end up with similar rows.\n"
    "2. **Attention.** Each position looks back at the earlier ones and takes a weighted mix "
    "of what they carry: softmax(QKᵀ/√d_k)V, the formula in the logo. We will show which "
    "tokens each position attends to.\n"
    "3. **The logit lens.** Apply the final scoring step to the middle layers and watch the "
    "model's guess for the next token take shape, layer by layer.\n"
)
