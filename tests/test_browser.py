"""Real-browser tests: Chromium driving `streamlit run` with the tiny model."""

import pytest
from browser import ARTIFACTS, chromium, no_errors, streamlit_server, type_text, wait_idle
from playwright.sync_api import expect

from token_by_token.tokens import show_ids


@pytest.fixture(scope="module")
def server(tiny_dir):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with streamlit_server(tiny_dir) as url:
        yield url


@pytest.fixture
def page(server):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(server)  # Chapter 1 is the default page
        page.wait_for_selector("text=Chapter 1: Tokenization", timeout=90_000)
        wait_idle(page)
        yield page


def test_type_text_and_see_the_token_spans(page, loaded):
    text = "Hello tokens, 日本語 and 👍🏽"
    type_text(page, text)
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    expect(page.get_by_text(f"tokens = {ids}")).to_be_visible()
    chips = page.locator('[data-testid="stMarkdownContainer"] span[style*="inline-flex"]')
    expect(chips).to_have_count(len(ids))
    no_errors(page)
    page.screenshot(path=str(ARTIFACTS / "chapter1-tokenizer.png"), full_page=True)


def test_markup_in_the_text_is_shown_literally(page, loaded):
    text = "**bold** _it_ $x^2$ :red[alarm] <b>tag</b> [a](javascript:alert(1)) `x` \\ {{ }}"
    type_text(page, text)
    container = page.locator(
        '[data-testid="stMarkdownContainer"]:has(span[style*="inline-flex"])').first
    expect(container).to_be_visible()
    # each chip's body is its token exactly as show() gives it: nothing was interpreted
    bodies = container.evaluate(
        "c => [...c.querySelectorAll('span[style*=\"inline-flex\"]')]"
        ".map(chip => chip.childNodes[0].textContent)")
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    assert bodies == show_ids(loaded.tokenizer, ids)
    assert "".join(bodies).replace("␣", " ") == text
    for tag in ["strong", "em", "b", "a", ".katex", "script", "img"]:
        expect(container.locator(tag)).to_have_count(0)
    # a Streamlit colour directive would have made a coloured span
    expect(container.locator('span[class*="red"], span[style*="color: red"]')).to_have_count(0)
    no_errors(page)
    page.screenshot(path=str(ARTIFACTS / "chapter1-hostile.png"), full_page=True)
