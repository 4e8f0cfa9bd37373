"""Chapter 1 on a vocabulary like Qwen3's: bytes that are not whole characters, ids the
tokenizer has no token for, special versus other added tokens, the lookup, the normalizer,
share links that load, and messages that are true."""

from urllib.parse import quote

import pytest
import tiny_model
from helpers import MAIN, code_starting, page_text, run_app
from streamlit.testing.v1 import AppTest
from transformers.convert_slow_tokenizer import bytes_to_unicode

from chapter1.tokenizer import tokenize
from token_by_token.state import LINK_LIMIT

LLAMA = "🦙".encode()  # 4 bytes: f0 9f a6 99


def byte_ids(tokenizer, data: bytes) -> list[int]:
    """The single-byte tokens spelling `data` (byte-level BPE has one for every byte)."""
    return [tokenizer.convert_tokens_to_ids(bytes_to_unicode()[b]) for b in data]


def everything_shown(at) -> str:
    return page_text(at) + "\n".join(c.value for c in at.code)


def test_a_character_cut_by_generation_keeps_its_bytes_and_the_page_says_why(loaded):
    text = "Llamas are cute"
    first_two = byte_ids(loaded.tokenizer, LLAMA[:2])
    at = run_app(text=text, autoregressive=True, generated=first_two)
    assert "\ufffd" not in everything_shown(at)
    assert "text = '<0xF0><0x9F>'" in code_starting(at, "generated = ")
    assert any("has not finished" in c.value for c in at.caption)

    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert not at.exception
    assert at.session_state["text"] == text  # a text box holds characters, not bytes
    assert "\ufffd" not in everything_shown(at)
    [warning] = [w.value for w in at.warning if "different ids" in w.value]
    assert "2 bytes" in warning and "not finished" in warning and "<0xF0><0x9F>" in warning
    assert "more than one way" not in warning  # not the reason here
    blocks = [m.value for m in at.markdown]
    generated_chips = blocks[blocks.index("Generated ids:") + 1]  # kept for comparison
    assert all(f">{i}<" in generated_chips for i in first_two)


def test_a_whole_character_over_four_tokens_is_handed_back_whole(loaded):
    ids = byte_ids(loaded.tokenizer, LLAMA)
    at = run_app(text="Llamas are cute", autoregressive=True, generated=ids)
    assert "text = '🦙'" in code_starting(at, "generated = ")
    assert not any("has not finished" in c.value for c in at.caption)
    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert at.session_state["text"] == "Llamas are cute🦙"
    assert not any("byte" in w.value for w in at.warning)


@pytest.fixture(scope="module")
def padded_dir(tmp_path_factory):
    """A tiny model whose tables have 64 rows more than its tokenizer has tokens (Qwen3:
    151,936 rows for 151,669 tokens)."""
    return tiny_model.build(tmp_path_factory.mktemp("padded"), unused_rows=64)


def test_an_id_without_a_token_is_named_not_lost(padded_dir, monkeypatch):
    monkeypatch.setenv("TOKEN_BY_TOKEN_MODEL", str(padded_dir))
    from token_by_token.model import load
    tokenizer = load().tokenizer
    unknown = len(tokenizer) + 3
    words = tokenize(tokenizer, " and")
    at = run_app(text="cats", autoregressive=True, generated=[unknown, *words])
    assert f"text = '<unused id {unknown}> and'" in code_starting(at, "generated = ")
    assert "\ufffd" not in everything_shown(at)
    at.sidebar.toggle(key="autoregressive").set_value(False).run()
    assert not at.exception
    assert at.session_state["text"] == "cats and"
    [warning] = [w.value for w in at.warning if "different ids" in w.value]
    assert f"({unknown})" in warning and "no token" in warning
    assert "byte" not in warning and "more than one way" not in warning


def test_special_tokens_and_other_added_tokens_are_told_apart(loaded):
    special, added = len(tiny_model.SPECIAL_TOKENS), len(tiny_model.ADDED_TOKENS)
    at = run_app(text="<think>why</think> then<|im_end|>")
    text = page_text(at)
    assert f"**{special} special tokens**" in text
    assert f"**{added} added tokens that are not special**" in text
    [table] = [d.value for d in at.dataframe if "special" in d.value.columns]
    assert table["special"].sum() == special and (~table["special"]).sum() == added
    assert set(table[~table["special"]]["token"]) == set(tiny_model.ADDED_TOKENS)
    infos = [i.value for i in at.info]
    [specials] = [i for i in infos if i.startswith("Your text contains special tokens")]
    [others] = [i for i in infos if i.startswith("Your text contains added tokens")]
    assert "<|im_end|>" in specials and "<think>" not in specials
    assert "<think>" in others and "</think>" in others and "<|im_end|>" not in others


def lookup(at, query: str):
    at.text_input(key="lookup").input(query).run()
    assert not at.exception
    return at


def test_lookup_reads_digits_as_an_id_and_as_text(loaded):
    digits = "7"  # Qwen's tokenizer (and this one) reads numbers digit by digit
    at = lookup(run_app(), digits)
    id_table = at.dataframe[1].value
    assert id_table["id"].tolist() == [int(digits)]
    found = at.dataframe[2].value
    assert len(found) > 0 and all(digits in token for token in found["token"])
    assert loaded.tokenizer.convert_tokens_to_ids(digits) in found["id"].tolist()


def test_lookup_takes_ids_written_with_thousands_separators(loaded):
    at = lookup(run_app(), "1,024")
    assert at.dataframe[1].value["id"].tolist() == [1024]
    at = lookup(at, f"{len(loaded.tokenizer) + 5:,}")
    assert any(f"no token with id {len(loaded.tokenizer) + 5:,}" in i.value for i in at.info)


def test_lookup_counts_in_the_singular_and_finds_added_tokens(loaded):
    at = lookup(run_app(), "</think>")
    assert any(c.value.startswith("1 token contains") for c in at.caption)
    assert at.dataframe[1].value["token"].tolist() == ["</think>"]
    at = lookup(at, "␣the")
    found = at.dataframe[1].value
    assert len(found) > 1 and all("␣the" in token for token in found["token"])
    assert any(c.value.startswith(f"{len(found):,} tokens contain") for c in at.caption)


def test_the_page_says_when_the_normalizer_changed_the_text(loaded):
    at = run_app(text="cafe\u0301")  # e + combining acute: NFC makes it é
    [note] = [i.value for i in at.info if "normalizes" in i.value]
    assert "U+0301" in note and "U+00E9" in note and "65 cc 81" in note and "c3 a9" in note
    at = run_app(text="café")
    assert not [i for i in at.info if "normalizes" in i.value]


def test_cap_messages_only_where_they_are_true(loaded):
    at = run_app(text=" ".join(["word"] * 1100))
    assert any("keeps the first 1,024" in w.value for w in at.warning)
    assert any("fills 1,024 tokens" in i.value for i in at.info)
    assert not any("generation stops here" in w.value for w in [*at.warning, *at.success])
    grown = code_starting(at, "next_id = ").splitlines()[1]
    assert "1025" not in grown and "1,025" not in grown and "never appended" in grown


CJK = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(10_000))


def encoded_query(at) -> str:
    return "&".join(f"{k}={quote(v, safe='')}" for k, v in at.query_params.items()
                    for v in (v if isinstance(v, list) else [v]))


def shared_text(at) -> str:
    shared = at.query_params["text"]
    return shared[0] if isinstance(shared, list) else shared


def test_a_long_text_makes_a_share_link_that_loads_and_says_it_was_shortened(loaded):
    at = run_app()
    at.sidebar.text_area(key="text").input(CJK).run()
    assert 0 < len(encoded_query(at)) <= LINK_LIMIT
    shared = shared_text(at)
    assert CJK.startswith(shared) and 0 < len(shared) < len(CJK)
    # here each character is 3 tokens: the cap of 1,024 tokens comes before 8 KB
    assert len(tokenize(loaded.tokenizer, shared)) <= 1024
    assert any(f"first {len(shared):,} of your 10,000 characters" in c.value
               and "context cap" in c.value for c in at.sidebar.caption)
    again = AppTest.from_file(MAIN, default_timeout=60)  # a new learner opens the link
    again.query_params["text"] = shared
    again.run()
    assert again.session_state["text"] == shared
    assert not [c for c in again.sidebar.caption if "share link" in c.value]


def test_a_link_over_8_kb_is_cut_at_a_token_and_says_so(loaded):
    word = " function"
    assert len(tokenize(loaded.tokenizer, word)) == 1  # 1,024 tokens: about 11 KB escaped
    text = word * 1100
    at = run_app()
    at.sidebar.text_area(key="text").input(text).run()
    assert len(encoded_query(at)) <= LINK_LIMIT
    shared = shared_text(at)
    assert text.startswith(shared) and len(shared) % len(word) == 0  # whole tokens
    assert len(quote(text[: len(shared) + len(word)], safe="")) > LINK_LIMIT - 5  # as long as fits
    assert any(f"first {len(shared):,} of your {len(text):,} characters" in c.value
               and "8 KB" in c.value for c in at.sidebar.caption)


def test_a_short_text_is_shared_whole(loaded):
    at = run_app()
    at.sidebar.text_area(key="text").input("a short text").run()
    assert at.query_params["text"] in ("a short text", ["a short text"])
    assert not [c for c in at.sidebar.caption if "share link" in c.value]
