"""Which models Chapter 2 can open, and what a model that it can't open has instead.

Chapter 2's lesson functions follow one family of decoder layers (Qwen3's). A model of another
architecture still runs every section of Chapter 1; Chapter 2 then says, from the model's own
config and modules, what it is and how its layers differ, instead of failing half-way.
"""

from dataclasses import dataclass

from transformers import DynamicCache

OPENS = {"qwen3": "Qwen3"}  # config.model_type -> the family's name


@dataclass(frozen=True)
class Refusal:
    """Why Chapter 2 can't open a model, in the learner's terms."""
    architecture: str        # the model's class, e.g. LlamaForCausalLM
    model_type: str          # config.model_type, e.g. llama
    differences: list[str]   # what its layers have that the lessons don't follow

    @property
    def message(self) -> str:
        family = ", ".join(OPENS.values())
        found = "".join(f"\n- {d}" for d in self.differences)
        return (
            f"**Chapter 2 opens {family} models; this one is `{self.architecture}`** "
            f"(`model_type` {self.model_type}). Its layers differ from the ones this chapter's "
            f"lesson functions rebuild, so it can't be opened here:{found}\n\n"
            "Chapter 1 works on it in full: its tokenizer, its logits, sampling and "
            "generation step by step. To open a model here, pick a "
            f"{family} model (for example `Qwen/Qwen3-0.6B`, or the built-in pocket model)."
        )


def refusal(model) -> Refusal | None:
    """None when Chapter 2 can open `model`; else what it is and how it differs."""
    config = model.config
    kind = getattr(config, "model_type", "unknown")
    sliding = [i for i, s in enumerate(DynamicCache(config=config).is_sliding) if s]
    if kind in OPENS and not sliding:
        return None
    return Refusal(type(model).__name__, kind, differences(model, sliding))


def differences(model, sliding: list[int]) -> list[str]:
    """What the model's modules show that Qwen3's layers don't have (or lack)."""
    found = []
    inner = getattr(model, "model", None)
    layers = getattr(inner, "layers", None)
    if layers is None:
        found.append("its modules are laid out otherwise (no `model.layers`: GPT-2's "
                     "`transformer.h`, for one)")
        return found
    attn, norm = layers[0].self_attn, layers[0].input_layernorm
    if not hasattr(attn, "q_proj"):
        found.append("q, k and v come out of one fused projection (`qkv_proj`)")
    elif getattr(attn.q_proj, "bias", None) is not None:
        found.append("q, k and v carry biases")
    if not hasattr(attn, "q_norm"):
        found.append("no QK-norm on each head's query and key")
    if not hasattr(norm, "variance_epsilon"):
        found.append(f"its normalisation is `{type(norm).__name__}`, not Qwen3's RMSNorm")
    if sliding:
        found.append(f"{len(sliding)} of its {len(layers)} layers attend through a sliding "
                     f"window of {model.config.sliding_window} positions")
    return found or [f"its architecture, {type(model).__name__}, is not one this chapter "
                     "knows"]
