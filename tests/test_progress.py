"""token_by_token/progress.py: a section's bar, drawn only when its drawing reports."""

from token_by_token import progress


class Place:
    """What shown() calls on its st.empty(), noted."""

    def __init__(self):
        self.calls = []

    def progress(self, value, text):
        self.calls.append(("progress", value, text))

    def empty(self):
        self.calls.append(("empty",))


def test_a_section_that_reports_nothing_sends_nothing():
    place = Place()
    with progress.shown(place):
        pass
    assert place.calls == []  # (each call is a message to the browser)


def test_a_report_draws_the_bar_and_the_end_removes_it():
    place = Place()
    with progress.shown(place):
        progress.report(1, 4, "Opening the model, layers")
        progress.report(2, 4, "Opening the model, layers")  # within EVERY: not drawn
        progress.report(4, 4, "Opening the model, layers")  # the last one always is
    assert [c[0] for c in place.calls] == ["progress", "progress", "empty"]
    assert place.calls[0][1:] == (0.25, "Opening the model, layers: 1 of 4 · about 0 s left")
    assert place.calls[1][1:] == (1.0, "Opening the model, layers: 4 of 4")
    progress.report(1, 4, "outside")  # nobody watches: nothing happens
    assert len(place.calls) == 3
