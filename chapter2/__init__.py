"""Chapter 2: Inside the Model, declared: its sections in order (each reads what its READS
says); chapter2/page.py draws it, with the controls of chapter2/controls.py."""

from chapter2 import (
    attention,
    embeddings,
    kvcache,
    lens,
    mlp,
    patterns,
    rebuild,
    rmsnorm,
    since_gpt2,
    stream,
)

SECTIONS = [embeddings, rmsnorm, attention, mlp, rebuild, patterns, lens, stream, kvcache,
            since_gpt2]

from chapter2 import controls, pipeline  # noqa: E402  (they import the sections)
from token_by_token.chapter import Chapter  # noqa: E402

CHAPTER = Chapter("Chapter 2", SECTIONS, controls.CONTROLS, pipeline.view)
