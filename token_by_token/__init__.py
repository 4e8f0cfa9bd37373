"""The engine every chapter shares: the model, the learner's choices, token display, charts."""
