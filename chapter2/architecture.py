"""Which models Chapter 2 can open, what the one loaded has, and what a model that it can't
open has instead.

Chapter 2's lesson functions follow one family of decoder layers: Llama's, which Mistral,
Qwen2 and Qwen3 (and SmolLM2, a Llama) share, written once, with the steps a member may have
or not: QK-norm (Qwen3), biases on q, k and v (Qwen2), Llama 3's rescaled RoPE, a sliding
window (Mistral; Qwen2 and Qwen3 when configured). What the loaded model has is read from its
config and modules (`features`), never typed in. A model of another architecture still runs
every section of Chapter 1; Chapter 2 then says, from the model's own config and modules, what
it is and how its layers differ (`refusal`), instead of failing half-way.
"""

from dataclasses import dataclass

from chapter2.attention import sliding_window

OPENS = {"llama": "Llama", "mistral": "Mistral", "qwen2": "Qwen2", "qwen3": "Qwen3"}
ROPE = ("default", "llama3")  # the RoPE variants the lessons compute


@dataclass(frozen=True)
class Refusal:
    """Why Chapter 2 can't open a model, in the learner's terms."""
    architecture: str        # the model's class, e.g. Gemma3ForCausalLM
    model_type: str          # config.model_type, e.g. gemma3_text
    differences: list[str]   # what its layers have that the lessons don't follow

    @property
    def message(self) -> str:
        family = ", ".join(OPENS.values())
        found = "".join(f"\n- {d}" for d in self.differences)
        return (
            f"**Chapter 2 opens the Llama family of decoders ({family}); this one is "
            f"`{self.architecture}`** (`model_type` {self.model_type}). Its layers differ from "
            f"the ones this chapter's lesson functions rebuild, so it can't be opened "
            f"here:{found}\n\n"
            "Chapter 1 works on it in full: its tokenizer, its logits, sampling and "
            "generation step by step. To open a model here, pick one of the family (for "
            "example `Qwen/Qwen3-0.6B`, `HuggingFaceTB/SmolLM2-360M-Instruct`, or the "
            "built-in pocket model)."
        )


def family(model) -> str:
    """The family's name for the page: Qwen3, Llama, …"""
    return OPENS.get(getattr(model.config, "model_type", ""), type(model).__name__)


def refusal(model) -> Refusal | None:
    """None when Chapter 2 can open `model`; else what it is and how it differs."""
    found = differences(model)
    if getattr(model.config, "model_type", None) in OPENS and not found:
        return None
    kind = getattr(model.config, "model_type", "unknown")
    return Refusal(type(model).__name__, kind, found or [
        f"its architecture, {type(model).__name__}, is not one this chapter knows"])


def rope_type(config) -> str:
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_type", "default")


def differences(model) -> list[str]:
    """What the model's modules and config show that the lessons don't follow."""
    config, found = model.config, []
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        return ["its modules are laid out otherwise (no `model.layers`: GPT-2's "
                "`transformer.h`, for one)"]
    block = layers[0]
    attn, names = block.self_attn, {n for n, _ in block.named_children()}
    if not hasattr(attn, "q_proj"):
        found.append("q, k and v come out of one fused projection (`qkv_proj`)")
    if not hasattr(block.mlp, "gate_proj"):
        found.append("its MLP's gate and up projections are one fused projection "
                     "(`gate_up_proj`)")
    if {"pre_feedforward_layernorm", "post_feedforward_layernorm"} & names:
        found.append("each layer normalises the updates of attention and the MLP too "
                     "(four norms per layer, where the lessons have two)")
    if not hasattr(block.input_layernorm, "variance_epsilon"):
        found.append(f"its normalisation is `{type(block.input_layernorm).__name__}`, whose "
                     "weight is applied as (1 + weight) or which is not the RMSNorm "
                     "the lessons rebuild")
    if getattr(config, "hidden_act", "silu") != "silu":
        found.append(f"its MLP's activation is {config.hidden_act}, not silu")
    if rope_type(config) not in ROPE:
        found.append(f"its RoPE is of type {rope_type(config)} (the lessons compute the "
                     "default and Llama 3's)")
    params = getattr(config, "rope_parameters", None) or {}
    if params.get("partial_rotary_factor", 1.0) != 1.0:
        found.append("RoPE turns only part of each head's numbers")
    if hasattr(model.model.embed_tokens, "embed_scale"):
        found.append("its embedding is scaled by a constant before the first layer")
    if getattr(config, "final_logit_softcapping", None) or getattr(
            config, "attn_logit_softcapping", None):
        found.append("it caps its scores with tanh (soft-capping)")
    return found


def features(model) -> list[str]:
    """What this model's layers have, each computed from its config and modules: the
    sentences the page states ("this model has no QK-norm: the step is skipped")."""
    config, block = model.config, model.model.layers[0]
    attn, said = block.self_attn, []
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    said.append(f"{heads} query heads share {kv} key/value heads (grouped-query attention)"
                if kv < heads else f"{heads} heads, each with its own keys and values")
    said.append("QK-norm: each head's query and key are RMS-normalised before RoPE"
                if hasattr(attn, "q_norm") else "this model has no QK-norm: the step is skipped")
    said.append("q, k and v carry biases" if attn.q_proj.bias is not None else
                "no biases in the attention's projections")
    params = getattr(config, "rope_parameters", None) or {}
    if rope_type(config) == "llama3":
        said.append(f"RoPE frequencies rescaled for long contexts: factor {params['factor']:g} "
                    f"(rope_type llama3, trained on {params['original_max_position_embeddings']:,}"
                    " positions before)")
    else:
        said.append(f"RoPE with base θ = {params.get('rope_theta', 10_000.0):,.0f}")
    windows = [sliding_window(layer) for layer in model.model.layers]
    sliding = [i for i, w in enumerate(windows) if w is not None]
    if sliding:
        which = ("every layer" if len(sliding) == len(windows) else
                 f"{len(sliding)} of its {len(windows)} layers (layer{'s' * (len(sliding) > 1)}"
                 f" {', '.join(map(str, sliding[:6]))}{' …' if len(sliding) > 6 else ''})")
        verb = "attend" if 1 < len(sliding) < len(windows) else "attends"
        said.append(f"{which} {verb} through a sliding window "
                    f"of {windows[sliding[0]]:,} positions: the causal mask also hides the keys "
                    "further back, and the KV cache keeps no more")
    tied = model.lm_head.weight is model.model.embed_tokens.weight
    said.append("the output matrix is the embedding table (tied)" if tied else
                "a separate output matrix (not tied to the embedding table)")
    said.append(f"it computes in {str(model.dtype).removeprefix('torch.')}")
    return said


def layer_window(model, layer: int) -> int | None:
    """The sliding window of one layer (None: it reads every earlier position)."""
    return sliding_window(model.model.layers[layer])

