"""Train the pocket model: a small Qwen3 language model that ships with the app and runs offline.

Why: the app steps Qwen/Qwen3-0.6B token by token, but that needs the Hugging Face hub. The
pocket model is a ~10 MB stand-in with the same code path (`Qwen3ForCausalLM`: GQA, RoPE,
RMSNorm, tied embeddings; a byte-level BPE tokenizer with Qwen2's pre-tokenizer and Qwen's
special tokens and chat template) that was actually trained, so its next-token choices are
English rather than noise.

Data: documentation text that is on every machine that runs the app. The docstrings of
Python's standard library and its language reference topics (`pydoc_data.topics`), both under
the PSF License, and the docstrings of the app's own permissively licensed dependencies, at the
versions `uv.lock` pins (SOURCES below names each with its licence). Test directories are
skipped, and every paragraph is kept once (the first time, in sorted order): libraries repeat
their argument descriptions across hundreds of docstrings, and a repeated paragraph would let
held-out text be recited from memory. A fixed ~3% of documents (chosen by a hash of their text)
is held out for evaluation; the report gives the held-out figures on all of it and on its
standard-library part alone.

How: deterministic (fixed seeds, sorted data, 2 threads) when the step count, not the time
limit, ends training. Prints and writes `<out>/training_report.json`: held-out loss,
perplexity and top-1 next-token accuracy, training time, size and three greedy continuations.

Run:  uv run python scripts/train_pocket_model.py [--out token_by_token/pocket] [--minutes 30]
          [--steps N] [--vocab 8192] [--smoke]
"""

import argparse
import hashlib
import json
import math
import os
import sys
import sysconfig
import time
from importlib import metadata
from pathlib import Path
from pydoc_data.topics import topics

# Idle OpenMP threads sleep instead of spinning: when another process holds one of the two
# cores, spinning made every training step ~10x slower (measured); read when torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
import tiny_model  # noqa: E402  (the shared tokenizer helpers live with the tests)

SKIP_DIRS = {"test", "tests", "idle_test", "testing", "site-packages"}
# The app's dependencies whose docstrings join the corpus, with their licences.
SOURCES = {"transformers": "Apache-2.0", "torch": "BSD-3-Clause", "sympy": "BSD-3-Clause",
           "pandas": "BSD-3-Clause", "networkx": "BSD-3-Clause", "numpy": "BSD-3-Clause",
           "streamlit": "Apache-2.0", "altair": "BSD-3-Clause", "huggingface_hub": "Apache-2.0"}
PROMPTS = ["The function returns", "Return the number of", "This module provides"]
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# Model shape and training settings; --smoke swaps in a tiny model and a few steps.
POCKET = {"hidden_size": 192, "intermediate_size": 576, "num_hidden_layers": 4,
          "num_attention_heads": 6, "num_key_value_heads": 2, "head_dim": 32}
SMOKE = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16}
TRAIN = {"context": 256, "batch": 16, "lr": 3e-3, "warmup": 30, "weight_decay": 0.1,
         "steps": 2600, "compile": True}
SMOKE_TRAIN = {"context": 64, "batch": 4, "lr": 2e-3, "warmup": 2, "weight_decay": 0.1,
               "steps": 5, "compile": False}


def docstrings(root: Path, files) -> set[str]:
    """The module, class and function docstrings of these Python files (paths under root)."""
    docs = set()
    for file in sorted(Path(f) for f in files):
        if file.suffix != ".py" or SKIP_DIRS & set(file.parts[:-1]):
            continue
        try:
            found = tiny_model.docstrings_in((root / file).read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        docs.update(doc.strip() for doc in found if doc.strip())
    return docs


def sources(smoke: bool = False) -> dict[str, set[str]]:
    """Raw documents by source: the standard library first, then each dependency in SOURCES."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = [p.relative_to(stdlib) for p in stdlib.rglob("*.py")]
    found = {"python": set(topics.values()) | docstrings(stdlib, files)}
    for name in [] if smoke else SOURCES:
        dist = metadata.distribution(name)
        found[name] = docstrings(Path(dist.locate_file("")), dist.files or [])
    return found


def documents(found: dict[str, set[str]]) -> dict[str, list[str]]:
    """Each source's documents, sorted, with every paragraph kept only where it first appears."""
    seen, result = set(), {}
    for name, docs in found.items():
        kept = []
        for doc in sorted(docs):
            paragraphs = [p for p in doc.split("\n\n") if p.strip() and p not in seen]
            seen.update(paragraphs)
            if paragraphs:
                kept.append("\n\n".join(paragraphs))
        result[name] = kept
    return result


def is_held_out(text: str) -> bool:
    """~3% of documents, chosen by content so the split never depends on order or run."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 100 < 3


def token_stream(tokenizer, docs: list[str]) -> torch.Tensor:
    """All documents as one id sequence, each followed by <|endoftext|>."""
    eot = tokenizer.token_to_id("<|endoftext|>")
    ids = []
    for encoding in tokenizer.encode_batch(docs):
        ids += encoding.ids + [eot]
    return torch.tensor(ids, dtype=torch.long)


def build_model(tokenizer, shape: dict, max_positions: int) -> Qwen3ForCausalLM:
    ids = {token: tokenizer.token_to_id(token) for token in tiny_model.SPECIAL_TOKENS}
    config = Qwen3Config(
        vocab_size=tokenizer.get_vocab_size(), **shape,
        max_position_embeddings=max_positions, rope_theta=1_000_000.0, rms_norm_eps=1e-6,
        tie_word_embeddings=True, bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    model = Qwen3ForCausalLM(config)
    # Chat turns end with <|im_end|>, documents with <|endoftext|>: stop at either.
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"], bos_token_id=ids["<|endoftext|>"],
    )
    return model


def next_token_loss(model, batch: torch.Tensor) -> torch.Tensor:
    # bfloat16 matrix products (AMX/AVX-512 on recent CPUs) ~2x faster than float32 here;
    # the weights, gradients and optimizer state stay float32.
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(input_ids=batch[:, :-1]).logits
    return torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), batch[:, 1:].flatten())


def train(model, stream: torch.Tensor, settings: dict, deadline: float) -> int:
    """AdamW with warmup and cosine decay; returns the number of steps taken.

    Progress is the larger of steps/steps and time/time limit, so the learning rate still
    decays to zero when the time limit, rather than the step count, ends training.
    """
    generator = torch.Generator().manual_seed(0)
    decay = [p for p in model.parameters() if p.dim() >= 2]  # no decay on norms
    rest = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings["weight_decay"]}, {"params": rest}],
        lr=settings["lr"], betas=(0.9, 0.95), weight_decay=0.0)
    # Compiling fuses the many small element-wise kernels: ~1.5x faster after ~1 min.
    loss_fn = torch.compile(next_token_loss) if settings["compile"] else next_token_loss
    context, start, step = settings["context"], time.monotonic(), 0
    model.train()
    while step < settings["steps"]:
        progress = max(step / settings["steps"],
                       (time.monotonic() - start) / (deadline - start))
        if progress >= 1:
            break
        warmup = min(1.0, (step + 1) / settings["warmup"])
        lr = settings["lr"] * warmup * 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimizer.param_groups:
            group["lr"] = lr
        # Random windows of the stream; the seeded generator fixes the order.
        starts = torch.randint(0, len(stream) - context - 1, (settings["batch"],),
                               generator=generator)
        batch = torch.stack([stream[s:s + context + 1] for s in starts.tolist()])
        loss = loss_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 50 == 0:
            print(f"step {step:5d}  loss {loss.item():.3f}  lr {lr:.2e}  "
                  f"{time.monotonic() - start:6.0f}s", flush=True)
        step += 1
    return step


@torch.no_grad()
def evaluate(model, stream: torch.Tensor, context: int) -> dict:
    """Mean next-token loss and top-1 accuracy over consecutive windows of the held-out stream."""
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for start in range(0, len(stream) - 1, context):
        window = stream[start:start + context + 1].unsqueeze(0)
        logits = model(input_ids=window[:, :-1]).logits.float()
        targets = window[:, 1:]
        loss_sum += torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        correct += (logits.argmax(-1) == targets).sum().item()
        count += targets.numel()
    loss = loss_sum / count
    return {"loss": round(loss, 4), "perplexity": round(math.exp(loss), 2),
            "top1_accuracy": round(correct / count, 4), "tokens": count}


def continuations(model, tokenizer) -> dict:
    result = {}
    for prompt in PROMPTS:
        inputs = tokenizer(prompt, return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
        result[prompt] = tokenizer.decode(output[0, inputs["input_ids"].shape[1]:])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "token_by_token" / "pocket")
    parser.add_argument("--minutes", type=float, default=30.0, help="wall-clock limit")
    parser.add_argument("--steps", type=int, help="cap on training steps")
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--smoke", action="store_true", help="tiny corpus and model, seconds")
    args = parser.parse_args()
    began = time.monotonic()
    deadline = began + 60 * args.minutes - 60  # keep a minute to evaluate and save
    torch.manual_seed(0)
    torch.set_num_threads(2)
    shape, settings = (SMOKE, dict(SMOKE_TRAIN)) if args.smoke else (POCKET, dict(TRAIN))
    settings["steps"] = args.steps or settings["steps"]

    by_source = documents(sources(smoke=args.smoke))
    if args.smoke:
        by_source = {"python": by_source["python"][:200]}
    docs = [doc for kept in by_source.values() for doc in kept]
    train_docs = [d for d in docs if not is_held_out(d)]
    held_docs = [d for d in docs if is_held_out(d)]
    tokenizer = tiny_model.train_tokenizer(train_docs, 512 if args.smoke else args.vocab)
    train_ids, held_ids = token_stream(tokenizer, train_docs), token_stream(tokenizer, held_docs)
    held_python = token_stream(tokenizer, [d for d in by_source["python"] if is_held_out(d)])
    corpus = {"documents": len(docs), "held_out_documents": len(held_docs),
              "characters": sum(map(len, docs)), "train_tokens": len(train_ids),
              "held_out_tokens": len(held_ids),
              "sources": {name: {"version": "stdlib" if name == "python" else
                                 metadata.version(name),
                                 "licence": SOURCES.get(name, "PSF-2.0"),
                                 "documents": len(kept), "characters": sum(map(len, kept))}
                          for name, kept in by_source.items()}}
    print("corpus", corpus, flush=True)

    model = build_model(tokenizer, shape, max_positions=1024)
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {params / 1e6:.2f}M parameters, {shape}", flush=True)
    train_start = time.monotonic()
    steps = train(model, train_ids, settings, deadline)
    train_seconds = time.monotonic() - train_start
    float32 = evaluate(model, held_ids, settings["context"])

    args.out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(args.out)
    tiny_model.save_tokenizer(tokenizer, args.out, max_length=1024)
    config_path = args.out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(config, indent=2))

    # Evaluate what the app loads: the saved directory, in bfloat16.
    load_start = time.monotonic()
    tok = AutoTokenizer.from_pretrained(args.out)
    loaded = AutoModelForCausalLM.from_pretrained(args.out, dtype=torch.bfloat16)
    load_seconds = time.monotonic() - load_start
    tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                            add_generation_prompt=True)
    report = {
        "held_out_bfloat16": evaluate(loaded, held_ids, settings["context"]),
        "held_out_float32": float32,
        "held_out_python_bfloat16": evaluate(loaded, held_python, settings["context"]),
        "steps": steps, "training_seconds": round(train_seconds, 1),
        "load_seconds": round(load_seconds, 2),
        "total_seconds": round(time.monotonic() - began, 1),
        "model_mb": round((args.out / "model.safetensors").stat().st_size / 1e6, 2),
        "parameters": params, "shape": shape, "training": settings, "corpus": corpus,
        "continuations": continuations(loaded, tok),
    }
    (args.out / "training_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
