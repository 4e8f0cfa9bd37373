"""A button that takes one click at a time: the next click waits for the page the last one made.

Streamlit loses a click that reaches the server before the run started by the previous click
has called its on_click (a new click stops that run and starts another; measured: 6 rapid
Generate clicks appended 4 or 5 ids on a busy machine). No server-side code runs before that
point, so the browser holds the line: a click marks the button busy (aria-disabled, greyed,
with a note saying why), clicks on a busy button are refused, and the script below, which
Streamlit runs again each time the page is drawn anew, marks it ready.
"""

import uuid

import streamlit as st

GUARD = """
<style>
  .st-key-KEY button[aria-disabled="true"] { opacity: 0.55; cursor: progress; }
  .st-key-KEY { position: relative; }
  .st-key-KEY:has(button[aria-disabled="true"])::after {  /* in the gap below: no shift */
    content: "NOTE"; position: absolute; top: 100%; left: 0; white-space: nowrap;
    font-size: 0.8rem; opacity: 0.75;
  }
</style>
<script>
/* RUN: a new body on every run, so that Streamlit runs this script again */
(() => {
  const guards = (window.tokenByTokenGuards ??= {});
  if (!guards.KEY) {
    guards.KEY = { refused: 0 };
    window.addEventListener("click", (event) => {
      const button = event.target.closest?.(".st-key-KEY button");
      if (!button || button.disabled) return;
      if (button.getAttribute("aria-disabled") === "true") {
        event.preventDefault();
        event.stopImmediatePropagation();
        guards.KEY.refused += 1;
        return;
      }
      button.setAttribute("aria-disabled", "true");
    }, true);
  }
  document.querySelectorAll(".st-key-KEY button")
    .forEach((button) => button.removeAttribute("aria-disabled"));
})();
</script>
"""


def one_at_a_time(key: str, busy_note: str) -> None:
    """Call right after st.button(..., key=key): its clicks then reach the server one at a
    time. `busy_note` shows under the button while a click is being handled."""
    html = (GUARD.replace("KEY", key).replace("NOTE", busy_note)
            .replace("RUN", uuid.uuid4().hex))
    st.html(html, unsafe_allow_javascript=True)
