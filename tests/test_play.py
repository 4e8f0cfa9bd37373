"""Play (Chapter 1, Section 5): a number of tokens, one cached step each, streamed; the same
ids as that many Generate clicks; stops at end-of-text and at the context cap."""

import torch
from helpers import generated_ids, run_app

import chapter1.pipeline as pipeline
from chapter1.tokenizer import tokenize

WIDE = {"temperature": 1.0, "top_k": 0, "top_p": 1.0}  # draws far from greedy


def test_play_generates_that_many_ids_one_token_forward_each(loaded, forwards):
    at = run_app(autoregressive=True, play_tokens=7, **WIDE)
    forwards.clear()
    at.sidebar.button(key="play").click().run()
    played = generated_ids(at)
    ends = played and played[-1] in loaded.eos_ids
    assert len(played) == 7 or (ends and len(played) < 7)
    assert forwards == [[token_id] for token_id in played]  # one [1, 1] step per token
    assert f"**{len(played)} generated so far**" in " ".join(m.value for m in at.markdown)
    # the same as stepping with Generate next token, under the same seed
    stepped = run_app(autoregressive=True, **WIDE)
    for _ in played:
        stepped.sidebar.button(key="generate").click().run()
    assert generated_ids(stepped) == played
    at.sidebar.button(key="play").click().run()  # Play again: goes on from there
    assert generated_ids(at)[: len(played)] == played and len(generated_ids(at)) > len(played)


def test_play_stops_at_the_context_cap(loaded):
    words = 1
    while len(tokenize(loaded.tokenizer, " ".join(["word"] * (words + 1)))) \
            <= loaded.max_tokens - 3:
        words += 1
    text = " ".join(["word"] * words)
    room = loaded.max_tokens - len(tokenize(loaded.tokenizer, text))
    assert 0 < room <= 5
    at = run_app(text=text, autoregressive=True, play_tokens=20)
    at.sidebar.button(key="play").click().run()
    assert len(generated_ids(at)) == room
    assert any("context cap" in w.value for w in at.warning)
    assert at.sidebar.button(key="play").disabled


def test_play_stops_at_end_of_text(loaded, monkeypatch):
    eos, real = min(loaded.eos_ids), pipeline.append_next

    def third_is_eos(loaded, state):  # the model "chooses" end-of-text on the third token
        if len(state["generated"]) == 2:
            state["generated"].append(eos)
        else:
            real(loaded, state)

    monkeypatch.setattr(pipeline, "append_next", third_is_eos)
    at = run_app(autoregressive=True, play_tokens=50)
    at.sidebar.button(key="play").click().run()
    assert generated_ids(at)[2:] == [eos]  # nothing after it
    assert any("end-of-text token" in s.value for s in at.success)
    assert at.sidebar.button(key="play").disabled


def test_the_generation_downloads_as_json_and_csv(loaded):
    import io
    import json

    import pandas as pd

    from chapter1.autoregression import record, record_csv
    from chapter1.pipeline import SETTINGS, VIEW
    at = run_app(autoregressive=True, play_tokens=4, **WIDE)
    at.sidebar.button(key="play").click().run()
    assert {b.proto.label for b in at.get("download_button")} == {
        "Download the generation (JSON)", "Download the generation (CSV)"}
    view = at.session_state["_memo"].latest(VIEW)
    data = json.loads(json.dumps(record(loaded, view, {k: at.session_state[k]
                                                       for k in SETTINGS})))
    assert data["ids"] == list(view.ids) and data["settings"]["temperature"] == 1.0
    played = generated_ids(at)
    assert [s["id"] for s in data["steps"]] == played
    candidates = view.forward.candidates
    for s in data["steps"]:  # the step's top 10, from the row that predicted it
        row = s["position"] - 1
        assert [c["id"] for c in s["candidates"]] == candidates.ids[row].tolist()
        assert s["probability"] == float(candidates.chosen[row])
    table = pd.read_csv(io.StringIO(record_csv(data)))
    assert len(table) == len(played) * len(data["steps"][0]["candidates"])
    assert table.groupby("step")["drawn id"].first().tolist() == played


def test_a_branch_crops_the_cache_and_runs_one_step(loaded, forwards):
    at = run_app(autoregressive=True, play_tokens=4, **WIDE)
    at.sidebar.button(key="play").click().run()
    before = generated_ids(at)
    at.number_input(key="branch_step").set_value(2).run()
    [radio] = [r for r in at.radio if "At step 2" in r.label]
    other = next(i for i in radio.options if int(i.split("(")[-1].split(")")[0]) != before[1])
    other_id = int(other.split("(")[-1].split(")")[0])
    radio.set_value(other)
    forwards.clear()
    at.button(key="branch").click().run()
    assert generated_ids(at) == [before[0], other_id]
    assert forwards == [[other_id]]  # one step for the new token; the prefix is not read
    assert any("Branched: 3 tokens cut away" in i.value for i in at.info)
    from helpers import forward_of
    ids = list(forward_of(at).ids)
    with_cache = forward_of(at).last
    from chapter1.logits import logits
    assert torch.allclose(with_cache, logits(loaded.model, ids)[-1], atol=0.02)


def test_crop_and_continue_equals_recomputing_the_cut_sequence_in_float32(tiny_dir):
    from transformers import AutoModelForCausalLM, DynamicCache

    from chapter1.autoregression import branch
    from chapter1.logits import logits
    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir), dtype=torch.float32).eval()
    ids = [(37 * i + 11) % 2000 for i in range(30)]
    cache = DynamicCache(config=model.config)
    logits(model, ids, cache)  # the whole sequence read once
    new_ids, last = branch(model, cache, ids, 12, 7)
    assert new_ids == ids[:12] + [7] and cache.get_seq_length() == 13
    assert (last - logits(model, new_ids)[-1]).abs().max() <= 1e-4
