"""The engine every chapter shares: the model, the learner's choices, token display, charts."""

from token_by_token import threads  # noqa: F401  (before torch loads: token_by_token/threads.py)
