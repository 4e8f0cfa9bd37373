"""Build a small Qwen3 model directory offline: `uv run python tests/tiny_model.py OUT_DIR`.

The directory loads with the same `from_pretrained` calls as Qwen/Qwen3-0.6B, so the app, the
tests and the benchmarks run the real code path without the model hub:

- a byte-level BPE tokenizer trained with the `tokenizers` library on the docstrings of Python's
  standard library, with Qwen2's normalizer and pre-tokenizer, Qwen's special tokens and, like
  Qwen's, added tokens that are not special (`<think>`, ...); `--vocab-size 151669` grows it to
  Qwen3's size with words of the standard library's source (unmerged: for lookup timings);
- a randomly initialised `Qwen3ForCausalLM` (`--shape tiny`, the default; `--shape small`, a few
  times slower per step, for the browser test that stops a Play; or `--shape qwen3-0.6b`
  for the exact Qwen3-0.6B dimensions used by the benchmarks); `--arch` gives another
  architecture of the same size instead, from its transformers config class (ARCHS: Llama with
  Llama 3's RoPE scaling, Qwen2, Mistral and Qwen3 with a sliding window, Gemma 3, Phi-3,
  GPT-2), with the same tokenizer (GPT-2's without a chat template, as the real one).

`--init-std` scales the random weights: a larger value gives peaked, far-from-uniform next-token
distributions, so that top-k, top-p and min-p really remove tokens in tests.
"""

import argparse
import ast
import json
import re
import sysconfig
from functools import lru_cache
from pathlib import Path

import torch
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    trainers,
)
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GenerationConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)
from transformers.convert_slow_tokenizer import bytes_to_unicode
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen's tokenizer also has added tokens that are not special: always read whole, kept by
# decode(skip_special_tokens=True), not split by split_special_tokens=True.
ADDED_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>"]

SHAPES = {
    "tiny": {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
    },
    # Slower per step than "tiny" (a few ms on 2 cores): a Play lasts long enough for a
    # browser test to stop it while it runs.
    "small": {
        "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 64,
    },
    # The exact dimensions of Qwen/Qwen3-0.6B (its config.json).
    "qwen3-0.6b": {
        "vocab_size": 151936, "hidden_size": 1024, "intermediate_size": 3072,
        "num_hidden_layers": 28, "num_attention_heads": 16, "num_key_value_heads": 8,
        "head_dim": 128,
    },
}


def docstrings_in(source: str) -> list[str]:
    """The module, class and function docstrings of one Python source, in ast.walk order."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return [doc for node in ast.walk(ast.parse(source))
            if isinstance(node, kinds) and (doc := ast.get_docstring(node))]


def stdlib_docstrings(max_chars: int = 1_000_000) -> list[str]:
    """Docstrings of the standard library's modules, classes and functions, in a fixed order."""
    texts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        try:
            docs = docstrings_in(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        texts += docs
        total += sum(map(len, docs))
        if total >= max_chars:
            break
    return texts


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE with Qwen2's normalizer and pre-tokenizer (the same regex split)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte is a token
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    if tokenizer.get_vocab_size() < vocab_size - len(SPECIAL_TOKENS):
        tokenizer = grown(tokenizer, vocab_size - len(SPECIAL_TOKENS))
    tokenizer.add_special_tokens(SPECIAL_TOKENS)  # ids after the learned vocabulary, as in Qwen
    return tokenizer


@lru_cache(maxsize=2)
def trained(vocab_size: int) -> str:
    """The tokenizer trained once per process and size (a test run builds several models)."""
    return train_tokenizer(stdlib_docstrings(), vocab_size).to_str()


def words_of_stdlib() -> list[str]:
    """Distinct words of the standard library's source, with and without a leading space."""
    words: dict[str, None] = {}
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for word in re.findall(r"\w+", text):
            words[word] = None
            words[" " + word] = None
    return list(words)


def grown(tokenizer: Tokenizer, vocab_size: int) -> Tokenizer:
    """The same tokenizer with its BPE vocabulary grown to `vocab_size` entries by words of the
    standard library (without merges: encoding never produces them, lookups find them)."""
    spec = json.loads(tokenizer.to_str())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    to_byte_level = bytes_to_unicode()
    for word in words_of_stdlib():
        if len(vocab) >= vocab_size:
            break
        token = "".join(to_byte_level[b] for b in word.encode())
        vocab.setdefault(token, len(vocab))
    bigger = Tokenizer(models.BPE(vocab, [tuple(m) if isinstance(m, list) else tuple(m.split())
                                          for m in merges]))
    bigger.normalizer, bigger.pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    bigger.decoder = tokenizer.decoder
    return bigger


# ChatML, as Qwen3 writes it: each turn between <|im_start|>role and <|im_end|>; with
# enable_thinking=False the assistant's turn starts with an empty <think></think> block.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and not enable_thinking %}<think>\n\n</think>\n\n"
    "{% endif %}{% endif %}"
)


def save_tokenizer(tokenizer: Tokenizer, out: Path, max_length: int,
                   chat_template: bool = True) -> None:
    """The tokenizer's files; GPT-2's tokenizer, like the real one, has no chat template."""
    tokenizer.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "bos_token": None,
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
        "split_special_tokens": False,
        "extra_special_tokens": ["<|im_start|>"],
        "chat_template": CHAT_TEMPLATE,
    }
    if not chat_template:
        del config["chat_template"]
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))


WINDOW = 16  # the sliding window of the architectures that have one: shorter than a test text


def qwen3(dims, **common):
    return Qwen3Config(**dims, rope_theta=1_000_000.0, **common)


def qwen3_sliding(dims, **common):
    """Qwen3 configured with a sliding window on its first layer (Qwen3's own option)."""
    return Qwen3Config(**dims, rope_theta=1_000_000.0, use_sliding_window=True,
                       sliding_window=WINDOW, max_window_layers=1, **common)


def llama(dims, **common):
    """Llama 3's shape: RoPE frequencies rescaled for long contexts (rope_type llama3)."""
    return LlamaConfig(**dims, rope_parameters={
        "rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 256}, **common)


def qwen2(dims, **common):
    return Qwen2Config(**dims, rope_theta=1_000_000.0, **common)  # biases on q, k and v


def mistral(dims, **common):
    return MistralConfig(**dims, sliding_window=WINDOW, **common)


def gemma3(dims, **common):
    """Gemma 3: (1 + weight) RMSNorms, a scaled embedding, sliding layers between global."""
    return Gemma3TextConfig(**dims, sliding_window=WINDOW, query_pre_attn_scalar=dims["head_dim"],
                            layer_types=["sliding_attention", "full_attention"], **common)


def phi3(dims, **common):
    """Phi-3: q, k and v in one fused projection, gate and up in another."""
    dims = {k: v for k, v in dims.items() if k != "head_dim"}
    return Phi3Config(**dims, **common)


def gpt2(dims, **common):
    """GPT-2: LayerNorm, learned position vectors, a GELU MLP, one head per key."""
    return GPT2Config(vocab_size=dims["vocab_size"], n_embd=dims["hidden_size"],
                      n_layer=dims["num_hidden_layers"], n_head=dims["num_attention_heads"],
                      n_positions=common["max_position_embeddings"],
                      initializer_range=common["initializer_range"],
                      bos_token_id=common["bos_token_id"], eos_token_id=common["eos_token_id"],
                      tie_word_embeddings=True)


ARCHS = {"qwen3": qwen3, "qwen3-sliding": qwen3_sliding, "llama": llama, "qwen2": qwen2,
         "mistral": mistral, "gemma3": gemma3, "phi3": phi3, "gpt2": gpt2}


def build(out_dir, shape: str = "tiny", init_std: float = 0.02, seed: int = 0,
          vocab_size: int = 2048, unused_rows: int = 0, arch: str = "qwen3") -> Path:
    """Write tokenizer and randomly initialised model to out_dir; returns the directory.

    `unused_rows`: rows the model's tables have beyond the tokenizer's last id (Qwen3 pads its
    151,669 tokens to 151,936 rows); the qwen3-0.6b shape always has Qwen3's 151,936."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tokenizer = Tokenizer.from_str(trained(vocab_size))
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False)
                          for token in ADDED_TOKENS])
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    dims = {"vocab_size": tokenizer.get_vocab_size() + unused_rows, **SHAPES[shape]}
    config = ARCHS[arch](
        dims,
        max_position_embeddings=40960 if shape == "qwen3-0.6b" else 2048,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        initializer_range=init_std,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        dtype="bfloat16",
    ) if arch != "gpt2" else gpt2(dims, max_position_embeddings=2048,
                                  initializer_range=init_std, bos_token_id=ids["<|endoftext|>"],
                                  eos_token_id=ids["<|im_end|>"])
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
        bos_token_id=ids["<|endoftext|>"],
    )
    model.to(torch.bfloat16).save_pretrained(out)
    save_tokenizer(tokenizer, out, config.max_position_embeddings, arch != "gpt2")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--init-std", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vocab-size", type=int, default=2048,
                        help="tokens before the added ones (151669: Qwen3's vocabulary size)")
    parser.add_argument("--unused-rows", type=int, default=0,
                        help="model rows beyond the tokenizer's last id")
    parser.add_argument("--arch", choices=sorted(ARCHS), default="qwen3")
    args = parser.parse_args()
    out = build(args.out_dir, args.shape, args.init_std, args.seed, args.vocab_size,
                args.unused_rows, args.arch)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
