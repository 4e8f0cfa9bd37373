"""Section 10 — what changed since GPT-2: the loaded model and GPT-2 side by side.

GPT-2 (2019) is the model most teaching tools open. Each row of the table is computed by the
same short functions for both models, from their configs, their tokenizers and their weights'
names and shapes. GPT-2's side comes from its config.json, its tokenizer files and the header of
its weights file (names, shapes, dtypes: a few kilobytes): its weights are never loaded, so it
costs this app's memory budget nothing. Which model is compared is the server's setting
(TOKEN_BY_TOKEN_COMPARE, default openai-community/gpt2: a hub id or a local directory), not a
learner's: a learner can't make the server fetch anything. Not on this machine, its small
files are fetched once, in the background, when the hub can be reached.
"""

import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import streamlit as st
from huggingface_hub import HfApi, hf_hub_download
from transformers import AutoConfig, AutoTokenizer

from chapter2 import attention, embeddings, mlp, rebuild, rmsnorm
from chapter2.attention import rope_theta
from token_by_token import hub
from token_by_token.model import shapes_in
from token_by_token.sections import lesson, number
from token_by_token.tokens import markdown_literal

TITLE = "What changed since GPT-2"
READS = frozenset({"model"})  # the model it compares (the text changes nothing here)
NEEDS_IDS = False
SETTING = "TOKEN_BY_TOKEN_COMPARE"
GPT2 = "openai-community/gpt2"
SMALL = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
         "special_tokens_map.json")


def normalisation(config, shapes):
    """LayerNorm or RMSNorm, told by the norms' weights: a bias means LayerNorm.

    LayerNorm subtracts each vector's mean, divides by its spread, then
    applies a weight and a bias; RMSNorm only divides by the root mean
    square and applies a weight.
    """
    norms = [n for n in shapes if "ln_" in n or "norm" in n]
    biased = any(n.endswith(".bias") for n in norms)
    eps = getattr(config, "rms_norm_eps", None) or config.layer_norm_epsilon
    if biased:
        return f"LayerNorm: mean, spread, weight and bias (eps {eps:g})"
    return f"RMSNorm: root mean square, weight (eps {eps:g})"


def positions(config, shapes):
    """How the model knows where a token is: a learned table, or RoPE."""
    ends = ("wpe.weight", "positions.weight")
    tables = [n for n in shapes if n.endswith(ends)]
    if tables:
        rows, width = shapes[tables[0]]
        return (f"a learned vector per position, added to x "
                f"({rows:,} × {width:,})")
    theta = rope_theta(config)
    return f"none added; RoPE turns q and k per position (θ = {theta:,.0f})"


def heads(config):
    """Query heads, and the key/value heads they share (GQA) or not."""
    q = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or q
    if kv == q:
        return f"{q} heads, each with its own keys and values"
    return f"{q} query heads share {kv} key/value heads (GQA)"


def mlp_shape(config, shapes):
    """The MLP of a layer: its matrices, widths and activation.

    Two matrices (widen, narrow) for GPT-2; three for SwiGLU, whose
    gate decides, coordinate by coordinate, how much of `up` passes.
    """
    first = [n for n in shapes if ".0.mlp." in n and n.endswith(".weight")]
    wide = getattr(config, "intermediate_size", None) or config.n_inner
    wide = wide or 4 * config.hidden_size
    act = getattr(config, "hidden_act", None) or config.activation_function
    kind = "SwiGLU, " if len(first) == 3 else ""
    return (f"{kind}{len(first)} matrices, {config.hidden_size:,} → {wide:,} → "
            f"{config.hidden_size:,}, {act}")


def biases(shapes):
    """Bias vectors in the linear layers (the norms' aside)."""
    found = [n for n in shapes if n.endswith(".bias")
             and "ln_" not in n and "norm" not in n and len(shapes[n]) == 1]
    if not found:
        return "none"
    layer = [n for n in found if ".0." in n]
    return f"{len(found):,} ({len(layer)} per layer)"


def vocabulary(tokenizer):
    """The tokenizer: how many tokens, and how it cuts text."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    byte_level = "ByteLevel" in json.dumps(spec["pre_tokenizer"])
    kind = ("byte-level " if byte_level else "") + spec["model"]["type"]
    special = len(tokenizer.all_special_ids)
    return f"{len(tokenizer):,} tokens, {kind}, {special} special"


def output_matrix(shapes):
    """Are the scores written with the embedding table (tied)?"""
    if any(n.endswith("lm_head.weight") for n in shapes):
        return "its own matrix (not tied)"
    return "the embedding table, transposed (tied)"


def parameters(shapes):
    """Every number of the weights, a tied table counted once.

    (A 4-dimensional tensor is GPT-2's causal mask, stored with its
    weights in old checkpoints: not a parameter.)
    """
    return sum(math.prod(s) for s in shapes.values() if len(s) < 4)


def describe(config, shapes, tokenizer):
    """One architecture as the table's rows, from its config, weights' shapes
    and tokenizer."""
    return {
        "layers × width":
            f"{config.num_hidden_layers} × {config.hidden_size:,}",
        "normalisation": normalisation(config, shapes),
        "positions": positions(config, shapes),
        "attention heads": heads(config),
        "biases in linear layers": biases(shapes),
        "MLP": mlp_shape(config, shapes),
        "vocabulary and tokenizer": vocabulary(tokenizer),
        "output matrix": output_matrix(shapes),
        "context": f"{config.max_position_embeddings:,} positions",
        "parameters": f"{parameters(shapes):,}",
    }


# the lesson functions this section shows
LESSONS = [normalisation, positions, heads, mlp_shape, biases, vocabulary, output_matrix,
           parameters, describe]

WHERE = {  # each row: the section of this chapter that shows it on the loaded model
    "layers × width": rebuild, "normalisation": rmsnorm, "positions": attention,
    "attention heads": attention, "biases in linear layers": attention, "MLP": mlp,
    "vocabulary and tokenizer": embeddings, "output matrix": embeddings,
    "context": attention, "parameters": rebuild,
}


# --- GPT-2's side: its small files and its weights' header -------------------------------

@dataclass(frozen=True)
class Side:
    """What the table reads about one model."""
    name: str
    config: object
    shapes: dict
    tokenizer: object


_SIDES: dict[str, Side | str] = {}  # name -> its Side, or why it isn't here (yet)
_LOCK = threading.Lock()


def compared_id() -> str:
    return os.environ.get(SETTING, "").strip() or GPT2


def side_from(path: Path, name: str, shapes: dict | None = None) -> Side:
    return Side(name, AutoConfig.from_pretrained(path, trust_remote_code=False),
                shapes if shapes is not None else shapes_in(path),
                AutoTokenizer.from_pretrained(path, trust_remote_code=False))


def compared() -> Side | str:
    """The compared model's Side, or a sentence saying why it isn't here yet."""
    name = compared_id()
    with _LOCK:
        found = _SIDES.get(name)
        if isinstance(found, Side) or found == "fetching":
            return found
        if Path(name).expanduser().is_dir():
            _SIDES[name] = side_from(Path(name).expanduser(), name)
            return _SIDES[name]
        saved = hub.storage(name) / "token-by-token-shapes.json"
        here = hub.in_cache(name)
        if here is not None or saved.exists():
            folder = Path(here) if here else next((hub.storage(name) / "snapshots").iterdir())
            shapes = None if here else {k: tuple(v) for k, v in
                                        json.loads(saved.read_text()).items()}
            _SIDES[name] = side_from(folder, name, shapes)
            return _SIDES[name]
        _SIDES[name] = "fetching"
    threading.Thread(target=_fetch, args=(name,), daemon=True).start()
    return "fetching"


def _fetch(name: str) -> None:
    """GPT-2's small files into the cache, and its weights' header (a Range request for
    the first bytes of model.safetensors, huggingface_hub's get_safetensors_metadata)."""
    try:
        api = HfApi(endpoint=hub.endpoint())
        present = set(api.list_repo_files(name))
        for file in SMALL:
            if file in present:
                hf_hub_download(name, file, cache_dir=str(hub.cache_dir()),
                                endpoint=hub.endpoint())
        meta = api.get_safetensors_metadata(name)
        shapes = {tensor: info.shape for file in meta.files_metadata.values()
                  for tensor, info in file.tensors.items()}
        (hub.storage(name) / "token-by-token-shapes.json").write_text(json.dumps(shapes))
        result = None
    except Exception as error:  # said on the page
        result = hub.hub_error(name, error)
        result = ("the hub can't be reached from here" if result.offline else str(result))
    with _LOCK:
        if result is None:
            _SIDES.pop(name, None)  # read from the cache on the next run
        else:
            _SIDES[name] = result


def loaded_side(loaded) -> Side:
    model = loaded.model
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters()}  # tied: once
    return Side(loaded.model_id, model.config, shapes, loaded.tokenizer)


def table(left: dict, right: dict, names: tuple[str, str]) -> str:
    """The two descriptions side by side, as a Markdown table, each row linked to the section
    that shows it on this page."""
    rows = [f"| | {cell(names[0])} | {cell(names[1])} (this page) | shown in |",
            "|---|---|---|---|"]
    for what in left:
        module = WHERE[what]
        link = f"[section {number(module)}](#{module.__name__.rsplit('.', 1)[-1]})"
        same = " (the same)" if left[what] == right[what] else ""
        rows.append(f"| **{what}** | {cell(left[what])} | {cell(right[what])}{same} | {link} |")
    return "\n".join(rows)


def cell(text: str) -> str:
    return markdown_literal(str(text)).replace("|", "\\|")


def render(loaded, view) -> str:
    name = compared_id()
    st.markdown(
        f"GPT-2 (2019) is the model most tools that teach Transformers open. The table puts "
        f"`{name}` beside the model on this page, row by row, each computed by the short "
        "functions below from each model's config, its tokenizer and the names and shapes "
        "of its weights. GPT-2's weights are never loaded here: the header of its weights "
        "file (a few kilobytes) holds every name and shape, so the comparison costs no memory.")
    other = compared()
    if not isinstance(other, Side):
        st.info(f"`{name}`'s config and tokenizer are being fetched from the hub (about 2 MB, "
                "once): the table appears on the next rerun." if other == "fetching" else
                f"`{name}`'s config and tokenizer are not on this machine, and {other}: "
                "the table needs them once (about 2 MB).", icon="⏳")
        lesson(describe)
        return "GPT-2's side of the table is not here yet; the functions that compute it are."
    mine = loaded_side(loaded)
    left = describe(other.config, other.shapes, other.tokenizer)
    right = describe(mine.config, mine.shapes, mine.tokenizer)
    st.markdown(table(left, right, (other.name, mine.name)))
    lesson(describe, normalisation, positions, heads, mlp_shape, biases, vocabulary,
           output_matrix, parameters)
    changed = [what for what in left if left[what] != right[what]]
    return (f"{len(changed)} of the {len(left)} rows differ from GPT-2"
            + (f": {', '.join(changed)}." if changed else "."))
