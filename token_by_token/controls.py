"""Every widget the learner sets, each defined once: its label, key, range and help. The pages
draw them (through their chapters' Controls, token_by_token/chapter.py) and so do the floor
pages of the browser benchmark (bench/floor.py), which have no model: a widget takes plain
values (a count of layers, a list of labels), never the model.

A widget keeps its own value valid: when its range changed (a shorter text has fewer
positions), the learner's value is moved into it before the widget is drawn, since Streamlit
refuses a value out of range. That write, here, is the only one a page's drawing makes.
Every key's default is in state.DEFAULTS.
"""

import streamlit as st

from token_by_token import state

SPACE = "␣"  # how the page shows a space in a token


def fit(key: str, values, default=None) -> None:
    """Keep st.session_state[key] among `values` (a range or a list): else `default` (the
    key's default unless given), if allowed, or the nearest end."""
    s = st.session_state
    if s.get(key) in values:
        return
    default = state.DEFAULTS.get(key) if default is None else default
    if default in values:
        s[key] = default
    elif isinstance(values, range) and isinstance(s.get(key), int) and len(values):
        s[key] = min(max(s[key], values[0]), values[-1])
    else:
        s[key] = values[-1]


# --- every chapter --------------------------------------------------------------------------

def model_picker(choices: list[str], labels: dict[str, str], free: bool, note: str) -> None:
    """The model, in the sidebar of every page: the entries the server offers, each with
    what it is and whether it is in the cache; where allowed, any hub id or directory typed
    in (a new entry). One entry: no picker."""
    current = st.session_state.get("model")
    options = list(dict.fromkeys([*choices, *([current] if current else [])]))
    if len(options) == 1:
        return  # the page's caption names it
    st.selectbox("Model", options, key="model", format_func=lambda m: labels.get(m, m),
                 accept_new_options=free, on_change=state.model_changed,
                 help=note + (" Type a Hugging Face model id (like Qwen/Qwen3-0.6B) or the "
                              "path of a model directory to open another." if free else ""))

def text_box() -> None:
    """The learner's text, in the sidebar of every chapter (one key: the same text)."""
    st.text_area("Your text", key="text", on_change=state.text_edited, height=120,
                 disabled=st.session_state["autoregressive"],
                 help="Everything on this page is computed from this text. Locked while "
                      "Autoregressive mode is on (Chapter 1).")


def table_alternative(label: str, key: str, table) -> None:
    """An expander holding a chart's table alternative: `table()`, a DataFrame, is built only
    when the learner opens it (a closed one costs the page nothing)."""
    expander = st.expander(label, key=key, on_change="rerun")
    if st.session_state.get(key):
        expander.dataframe(table(), hide_index=True)


# --- Chapter 1 ------------------------------------------------------------------------------

def chat_toggles(thinks: bool) -> None:
    """Chat mode, and the template's thinking switch where it has one."""
    s = st.session_state
    st.toggle("Chat mode", key="chat", disabled=s["autoregressive"],
              help="Send your text as a chat app does: a user message in the model's "
                   "chat template. Locked while Autoregressive mode is on.")
    if thinks:
        st.toggle("Thinking", key="thinking", disabled=s["autoregressive"] or not s["chat"],
                  help="The chat template's enable_thinking. Off: the template itself ends "
                       "the ids with an empty <think></think> block, so the model answers "
                       "at once. On: the block is left to the model, to reason in first.")


def autoregressive_toggle(on_change=None, args=()) -> None:
    """Autoregressive mode, and the Stop button of a running Play (hidden unless Play runs:
    outside the fragments, its click stops the run at once)."""
    st.toggle("Autoregressive mode", key="autoregressive", on_change=on_change, args=args)
    if st.session_state["autoregressive"]:
        st.button("Stop", key="stop", help="Stop playing; every token so far is kept.")
        st.html("<style>.st-key-stop { display: none; }</style>")


def generate_button(on_click=None, args=(), disabled: bool = False) -> None:
    st.button("Generate next token", key="generate", type="primary", on_click=on_click,
              args=args, disabled=disabled,
              help="Append the sampled token and run one cached forward step.")


def play_controls(disabled: bool = False) -> bool:
    """How many tokens to play, and the Play button; True when it was clicked."""
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.number_input("Tokens to play", 1, 200, key="play_tokens")
        return st.button("Play", key="play", disabled=disabled,
                         help="Generate that many tokens, one cached step each, streamed "
                              "into the page.")


def sampling_controls(reset: "state.Reset") -> None:
    """The sampling sliders, their Reset button, the seed and Resample."""
    st.subheader("Sampling")
    for key, r in state.SLIDERS.items():
        st.slider(r.label, r.low, r.high, step=r.step, key=key)
    st.button(reset.label, key="reset", help=reset.help, on_click=state.reset_sampling,
              args=(reset.values,))
    seed = state.RANGES["seed"]
    st.number_input(seed.label, seed.low, seed.high, key="seed")
    st.button("Resample", key="resample", on_click=state.resample,
              help="Draw again from the same probabilities.")


def vocabulary_lookup() -> str:
    return st.text_input("Look up an id or a piece of text in the vocabulary", key="lookup",
                         placeholder=f"e.g. 1234, 151,668 or {SPACE}fox")


def heatmap_rows(positions: int) -> int:
    """How many of the last positions Section 2's heatmap shows."""
    fit("heatmap_rows", range(1, positions + 1))
    return st.slider("Positions shown (the last ones)", 1, positions, key="heatmap_rows")


def branch_step(generated: int) -> int:
    fit("branch_step", range(1, generated + 1))
    return st.number_input("Generated token", 1, generated, key="branch_step")


def branch_token(label: str, options: list[int], format_func) -> None:
    fit("branch_token", options)
    st.radio(label, options, format_func=format_func, key="branch_token")


# --- Chapter 2 ------------------------------------------------------------------------------

def token_slider(labels: list[str]) -> None:
    """The position the sections look at, labelled by its token."""
    fit("position", range(len(labels)))
    st.subheader("Look at")
    st.select_slider("Token", options=range(len(labels)), key="position",
                     format_func=lambda i: labels[i],
                     help="The position whose values the sections show.")


def layer_slider(layers: int) -> None:
    fit("layer", range(layers))
    st.slider("Layer", 0, layers - 1, key="layer",
              help="The layer whose attention and MLP the sections open up.")


def head_slider(heads: int) -> None:
    fit("head", range(heads))
    st.slider("Query head", 0, heads - 1, key="head",
              help="The attention head whose weights the sections show.")


def rows_slider(rows: int) -> None:
    fit("window", range(4, rows + 1))
    st.slider("Attention rows shown", 4, rows, key="window",
              help="How many query positions, ending at the token, the heatmaps draw.")


def halfway_toggle() -> None:
    st.toggle("Halfway through each layer", key="halfway",
              help="The logit lens also reads the stream between attention and the MLP.")


# --- Chapter 3 ------------------------------------------------------------------------------

def measure_again(key: str, on_click, args=(), label: str = "Measure again",
                  help: str = "Forget this section's measurements and take them again.") -> None:
    """A section's Measure again: its callback forgets what was measured."""
    st.button(label, key=key, on_click=on_click, args=args, help=help)


def batch_length_slider(cap: int) -> None:
    fit("batch_length", range(1, cap + 1))
    st.slider("Tokens per sequence", 1, cap, key="batch_length",
              help="The length of every sequence, for the memory sum below.")


def flash_block_slider(blocks: tuple[int, ...]) -> None:
    fit("flash_block", blocks)
    st.select_slider("Block size (keys per block)", options=blocks, key="flash_block",
                     help="How many keys and values each step of the loop reads.")


def quant_scheme_radio(labels: dict[str, str]) -> None:
    """The quantization scheme: labels maps each scheme to how the page names it."""
    fit("quant_scheme", list(labels))
    st.radio("Quantize to", list(labels), key="quant_scheme", horizontal=True,
             format_func=labels.get,
             help="The scheme applied to every matrix of every layer.")


def speculative_controls(drafts: dict[str, str], most_k: int, layers: int,
                         temperatures: tuple[float, float, float]) -> None:
    """The draft (drafts: value -> label), the tokens it guesses per round, its layers (of a
    model of `layers`: 1 to layers - 1, half of them at first; still drawn, disabled, for a
    draft that has no layers, so the value survives) and the temperature (low, high, step)."""
    s = st.session_state
    fit("spec_draft", list(drafts))
    fit("spec_k", range(1, most_k + 1))
    depths = list(range(1, max(layers - 1, 1) + 1))
    fit("spec_layers", depths, default=max(layers // 2, 1))
    low, high, step = temperatures
    with st.container(horizontal=True):
        st.radio("Draft", list(drafts), key="spec_draft", format_func=drafts.get)
        st.slider("Tokens guessed per round (k)", 1, most_k, key="spec_k")
    with st.container(horizontal=True):
        st.select_slider("Draft layers (L)", options=depths, key="spec_layers",
                         disabled=s["spec_draft"] != "layers",
                         help="The draft is the model cut after this many layers.")
        st.slider("Temperature (0 = greedy)", low, high, step=step, key="spec_temperature",
                  help="Both the model and the draft sample at this temperature.")


def paged_block_slider(sizes: tuple[int, ...]) -> None:
    fit("paged_block", sizes)
    st.select_slider("Block size (positions per block)", options=sizes, key="paged_block")


def class_sliders(most_learners: int, cap: int) -> None:
    """A class of learners for the memory sum: how many, how long each, the shared prefix."""
    fit("paged_learners", range(1, most_learners + 1))
    fit("paged_length", range(1, cap + 1))
    fit("paged_prefix", range(0, cap + 1))
    with st.container(horizontal=True):
        st.slider("Learners", 1, most_learners, key="paged_learners")
        st.slider("Tokens per learner", 1, cap, key="paged_length")
        st.slider("Shared prefix (tokens)", 0, cap, key="paged_prefix",
                  help="Positions every sequence starts with: a system prompt, a chat "
                       "template. Stored once when blocks are shared.")
