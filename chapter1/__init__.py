"""Chapter 1: Tokenization & Sampling, declared: its sections in order (each reads what its
READS says); chapter1/page.py draws it, with the controls of chapter1/controls.py."""

from chapter1 import autoregression, filters, logits, sampling, tokenizer

SECTIONS = [tokenizer, logits, filters, sampling, autoregression]

from chapter1 import controls, pipeline  # noqa: E402  (they import the sections)
from token_by_token.chapter import Chapter  # noqa: E402

CHAPTER = Chapter("Chapter 1", SECTIONS, controls.CONTROLS, pipeline.view,
                  waiting=controls.while_downloading)
