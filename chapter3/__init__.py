"""Chapter 3: The Speed of Inference, declared: its sections in order (each reads what its
READS says); chapter3/page.py draws it, with the controls of chapter3/controls.py."""

from chapter3 import batching, flash, paged, quantize, roofline, speculative

SECTIONS = [roofline, batching, flash, quantize, speculative, paged]

from chapter3 import controls, pipeline  # noqa: E402  (they import the sections)
from token_by_token.chapter import Chapter  # noqa: E402

CHAPTER = Chapter("Chapter 3", SECTIONS, controls.CONTROLS, pipeline.view, controls.opening)
