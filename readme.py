"""The README page: README.md, with its images shown by st.image (Markdown can't load files)."""

import re
from pathlib import Path

import streamlit as st

ROOT = Path(__file__).parent
text = (ROOT / "README.md").read_text(encoding="utf-8")
# re.split with one group alternates: markdown, image path, markdown, ...
for i, part in enumerate(re.split(r"^!\[[^\]]*\]\(([^)]+)\)$", text, flags=re.M)):
    if i % 2:
        st.image(str(ROOT / part))
    elif part.strip():
        st.markdown(part)
