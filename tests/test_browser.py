"""Real-browser tests: Chromium driving `streamlit run` with the tiny model."""

import json
import re
from functools import partial

import pytest
import tiny_model
from browser import (
    ARTIFACTS,
    CHAPTER1,
    COUNT_MESSAGES,
    ROOT,
    chromium,
    no_errors,
    received,
    rerun_page,
    shown,
    streamlit_server,
    type_text,
    wait_idle,
)
from playwright.sync_api import expect

import chapter2
from token_by_token.state import DEFAULT_TEXT
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
        page.add_init_script(COUNT_MESSAGES)  # (rerun_page sees its run start by them)
        page.goto(server)  # Chapter 1 is the default page
        page.wait_for_selector(CHAPTER1, timeout=90_000)
        wait_idle(page)
        yield page


def test_type_text_and_see_the_token_spans(page, loaded):
    text = "Hello tokens, 日本語 and 👍🏽"
    type_text(page, text)
    ids = loaded.tokenizer.encode(text, add_special_tokens=False)
    expect(page.get_by_text(f"tokens = {ids}")).to_be_visible()
    first_chips = page.locator(
        '[data-testid="stHtml"]:has(span[style*="inline-flex"])').first
    expect(first_chips.locator('span[style*="inline-flex"]')).to_have_count(len(ids))
    no_errors(page)
    page.screenshot(path=str(ARTIFACTS / "chapter1-tokenizer.png"), full_page=True)


def test_a_long_cjk_text_makes_a_share_link_under_8_kb_that_loads(page, server):
    text = "".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(10_000))
    type_text(page, text)
    expect(page.get_by_text("of your 10,000 characters")).to_be_visible(timeout=60_000)
    link = page.evaluate("location.href")
    query = page.evaluate("location.search")
    assert 0 < len(query) <= 8 * 1024
    other = page.context.browser.new_page()  # another learner opens the link
    response = other.goto(link)
    assert response.status == 200
    other.wait_for_selector(CHAPTER1, timeout=90_000)
    box = other.get_by_role("textbox", name="Your text")
    expect(box).not_to_have_value("", timeout=90_000)  # the sidebar is drawn after the title
    wait_idle(other)
    shared = box.input_value()
    assert text.startswith(shared) and len(shared) > 100
    no_errors(other)


def test_markup_in_the_text_is_shown_literally(page, loaded):
    text = "**bold** _it_ $x^2$ :red[alarm] <b>tag</b> [a](javascript:alert(1)) `x` \\ {{ }}"
    type_text(page, text)
    container = page.locator(
        '[data-testid="stHtml"]:has(span[style*="inline-flex"])').first
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


def test_walk_the_chapter_sliders_resample_and_five_generated_tokens(page):
    temperature = page.locator('[data-testid="stSlider"]', has_text="Temperature")
    temperature.get_by_role("slider").focus()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    expect(temperature).to_contain_text("0.80")
    wait_idle(page)
    page.wait_for_timeout(300)
    wait_idle(page)

    draw = page.locator("p", has_text="With seed")
    expect(draw).to_contain_text("resample count 0")
    page.get_by_role("button", name="Resample").click()
    expect(draw).to_contain_text("resample count 1")
    wait_idle(page)

    page.get_by_test_id("stCheckbox").get_by_text("Autoregressive mode").click()
    generate = page.get_by_role("button", name="Generate next token")
    expect(generate).to_be_visible()
    wait_idle(page)
    for n in range(1, 6):
        generate.click()
        expect(page.get_by_text(f"{n} generated so far")).to_be_visible(timeout=30_000)
        wait_idle(page)
    code = page.locator("code", has_text="generated = [").first.inner_text()
    generated = eval(code.split("generated = ")[1].splitlines()[0])  # a list of ints
    assert len(generated) == 5 and all(isinstance(i, int) for i in generated)
    expect(page.get_by_role("textbox", name="Your text")).to_be_disabled()
    no_errors(page)
    page.get_by_text("generated so far").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "chapter1-generated.png"))


def messages_for(page, action, appears: str) -> int:
    """The messages an action brought, until `appears` is shown and the page is idle; then
    the page must show what a page run draws."""
    before = received(page)
    action()
    expect(page.get_by_text(appears).first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(150)
    wait_idle(page)
    count = received(page) - before
    drawn = shown(page)
    rerun_page(page)
    assert shown(page) == drawn, f"after {appears!r}"
    return count


def test_a_control_sends_only_what_changed_and_the_page_shows_what_a_page_run_draws(
        server, tiny_dir):
    """token_by_token/unchanged.py: a Temperature move, a Resample and Generate clicks send
    fewer messages than the same app sending everything (TOKEN_BY_TOKEN_SEND_UNCHANGED=1),
    and after each the page shows, word for word, what a page run then draws."""
    sent = {}
    with streamlit_server(tiny_dir, TOKEN_BY_TOKEN_SEND_UNCHANGED="1") as everything, \
            chromium() as browser:
        for name, url in (("skipped", server), ("everything", everything)):
            page = browser.new_page(viewport={"width": 1280, "height": 1600})
            page.add_init_script(COUNT_MESSAGES)
            page.goto(url)
            page.wait_for_selector(CHAPTER1, timeout=90_000)
            wait_idle(page)
            temperature = page.locator('[data-testid="stSlider"]', has_text="Temperature")
            temperature.get_by_role("slider").focus()
            counts = [messages_for(page, partial(page.keyboard.press, "ArrowRight"),
                                   "temperature = 0.75"),
                      messages_for(page, page.get_by_role("button", name="Resample").click,
                                   "resample count 1")]
            generate = switch_on_autoregression(page)
            counts += [messages_for(page, generate.click, f"{n} generated so far")
                       for n in (1, 2, 3)]
            no_errors(page)
            sent[name] = counts
            page.close()
    # the first Generate changes what section 5 holds (the page reruns after it: see
    # unchanged.py); every other action sends fewer messages
    for index in (0, 1, 3, 4):
        assert sent["skipped"][index] < 0.8 * sent["everything"][index], sent


TOY = """
import sys
from contextvars import ContextVar

sys.path.insert(0, ROOT)
import streamlit as st

from token_by_token import unchanged

unchanged.page_started(st.session_state)
place, within = st.container(), ContextVar("within", default=False)


@st.fragment
def lines():
    n = st.slider("Lines", 0, 6, 4)
    with unchanged.drawing(st.session_state, alone=not within.get()), place:
        st.markdown("the same in every run")
        box = st.container(border=True) if n % 2 else st.expander("box", expanded=True)
        box.markdown("in a box")  # (the same element, in another kind of container)
        for i in range(n):
            st.markdown(f"line {i} of {n}")


token = within.set(True)
lines()
within.reset(token)
unchanged.page_finished(st.session_state)
"""


def test_a_fragment_that_draws_less_leaves_nothing_stale(tmp_path):
    """unchanged.py on a page of its own: a fragment draws n lines; moved from 6 lines to 1,
    the 5 lines it no longer draws (the page's own elements, which the browser keeps through
    a fragment's run) must go: the page reruns. An element the same as before, in a container
    of another kind, is sent again (the browser dropped it with the old container). Every
    step shows what a page run draws."""
    page_file = tmp_path / "toy.py"
    page_file.write_text(TOY.replace("ROOT", repr(str(ROOT))))
    with streamlit_server(None, script=page_file) as url, chromium() as browser:
        page = browser.new_page()
        page.add_init_script(COUNT_MESSAGES)
        page.goto(url)
        page.wait_for_selector("text=line 3 of 4")
        wait_idle(page)
        handle = page.get_by_role("slider")
        for key, n in [("End", 6), ("ArrowLeft", 5), ("Home", 0), ("ArrowRight", 1),
                       ("End", 6), ("ArrowLeft", 5), ("ArrowLeft", 4), ("Home", 0)]:
            handle.focus()
            page.keyboard.press(key)
            expect(page.get_by_test_id("stSlider")).to_contain_text(str(n))
            page.wait_for_timeout(300)
            wait_idle(page)
            main = page.get_by_test_id("stMain")
            expect(main.get_by_text(" of ")).to_have_count(n)
            expect(main.get_by_text("in a box", exact=True)).to_have_count(1)
            drawn = shown(page)
            rerun_page(page)
            assert shown(page) == drawn, f"{n} lines"


def test_walk_chapter_two_pick_a_layer_a_head_and_a_token(server, loaded):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(server + "/chapter-2")
        page.wait_for_selector("text=Chapter 2: Inside the Model", timeout=90_000)
        expect(page.get_by_text("The top-1 next token by hand equals the library's")) \
            .to_be_visible(timeout=90_000)
        wait_idle(page)
        layer = page.locator('[data-testid="stSlider"]', has_text="Layer")
        layer.get_by_role("slider").focus()
        page.keyboard.press("ArrowRight")
        expect(page.get_by_text("layer 1 reads a vector")).to_be_visible(timeout=30_000)
        wait_idle(page)
        head = page.locator('[data-testid="stSlider"]', has_text="Query head")
        head.get_by_role("slider").focus()
        page.keyboard.press("ArrowRight")
        page.keyboard.press("ArrowRight")
        expect(page.get_by_text("Query head 2 (pick another in the sidebar)")) \
            .to_be_visible(timeout=30_000)
        wait_idle(page)
        token = page.locator('[data-testid="stSlider"]', has_text="Token")
        token.get_by_role("slider").focus()
        page.keyboard.press("Home")
        expect(page.get_by_text("Query head 2 (pick another in the sidebar), at position 0 ")) \
            .to_be_visible(timeout=30_000)
        wait_idle(page)
        page.get_by_test_id("stSidebar").get_by_text("Halfway through each layer").click()
        layers = loaded.model.config.num_hidden_layers
        rows = page.get_by_text(f"halfway through and after each of the {layers} layers "
                                f"({2 * layers + 1} rows)")
        expect(rows).to_be_visible(timeout=30_000)
        wait_idle(page)
        no_errors(page)
        # the controls reran parts of the page (sections 2-6, or 7) into their places: each
        # section is there once, in order, and the conclusion after them
        headers = [h.strip() for h in page.locator("h2").all_inner_texts()]
        numbered = [h.split(".")[0] for h in headers if h[:1].isdigit()]
        assert numbered == [str(n) for n in range(1, len(chapter2.SECTIONS) + 1)], headers
        assert headers[-1] == "Conclusion", headers
        page.screenshot(path=str(ARTIFACTS / "chapter2.png"), full_page=True)
        rows.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "chapter2-lens.png"))


def generated_in(page) -> list[int]:
    code = page.locator("code", has_text="generated = [").first.inner_text()
    return [int(i) for i in code.split("generated = [")[1].split("]")[0].split(",")]


def switch_on_autoregression(page):
    page.get_by_test_id("stCheckbox").get_by_text("Autoregressive mode").click()
    generate = page.get_by_role("button", name="Generate next token")
    expect(generate).to_be_enabled()
    wait_idle(page)
    return generate


def test_generate_after_a_one_token_text(page):
    """Generate on a one-token text: the first step adds Section 2's rows slider above the
    nested sampling fragment, which must keep its place (and its sidebar) all the same."""
    type_text(page, "a")
    generate = switch_on_autoregression(page)
    for n in (1, 2):
        generate.click()
        expect(page.get_by_text(f"{n} generated so far")).to_be_visible(timeout=30_000)
        wait_idle(page)
        no_errors(page)


def test_rapid_generate_clicks_append_exactly_one_id_each(page):
    generate = switch_on_autoregression(page)
    for _ in range(6):  # as fast as a learner can click: no waiting between clicks
        generate.click(no_wait_after=True)
        page.wait_for_timeout(40)
    expect(page.get_by_text("6 generated so far")).to_be_visible(timeout=60_000)
    wait_idle(page)
    page.wait_for_timeout(1000)
    wait_idle(page)
    assert len(generated_in(page)) == 6
    expect(page.get_by_text("6 generated so far")).to_be_visible()
    no_errors(page)
    drawn = shown(page)  # runs stopped for newer ones left the page as a page run draws it
    rerun_page(page)
    assert shown(page) == drawn


@pytest.fixture
def slower_page(tmp_path_factory):
    """Chapter 1 on a model a few times slower per step than the tiny one ("small" shape):
    its Play of 200 tokens lasts ~4 s, so a Stop clicked as soon as it shows arrives while
    the server still plays (the tiny model's 200 steps were over before it, once in CI)."""
    model = tiny_model.build(tmp_path_factory.mktemp("small"), "small")
    with streamlit_server(model) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(url)
        page.wait_for_selector(CHAPTER1, timeout=90_000)
        wait_idle(page)
        yield page


def test_play_streams_tokens_into_the_page_and_stop_keeps_them(slower_page):
    page = slower_page
    switch_on_autoregression(page)
    tokens = page.get_by_label("Tokens to play")
    tokens.fill("200")
    tokens.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Play").click()
    live = page.get_by_text(re.compile(r"Playing: ([5-9]|\d\d+) generated so far"))
    expect(live).to_be_visible(timeout=60_000)  # streamed into the page while it plays
    expect(page.get_by_role("button", name="Stop")).to_be_visible()  # only while playing
    # without waiting for the streaming page to hold still (Playwright's actionability wait)
    page.get_by_role("button", name="Stop").click(force=True)
    wait_idle(page)
    page.wait_for_timeout(1000)
    wait_idle(page)
    kept = generated_in(page)
    assert 5 <= len(kept) < 200
    expect(page.get_by_text(f"{len(kept)} generated so far", exact=False).first).to_be_visible()
    page.wait_for_timeout(1000)
    assert generated_in(page) == kept  # stopped: nothing more comes
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    no_errors(page)
    page.get_by_text(f"{len(kept)} generated so far", exact=False).first \
        .scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "chapter1-played.png"))


def test_branch_at_a_generated_step(page):
    generate = switch_on_autoregression(page)
    for n in range(1, 4):
        generate.click()
        expect(page.get_by_text(f"{n} generated so far")).to_be_visible(timeout=30_000)
        wait_idle(page)
    before = generated_in(page)
    page.get_by_text("Branch: take another token at any generated step").click()
    at_step = page.get_by_role("spinbutton", name="Generated token")
    at_step.fill("2")
    at_step.press("Enter")
    expect(page.get_by_text("At step 2 the model chose")).to_be_visible(timeout=30_000)
    wait_idle(page)
    page.get_by_role("button", name="Continue from here").click()
    expect(page.get_by_text("Branched: 2 tokens cut away")).to_be_visible(timeout=30_000)
    wait_idle(page)
    after = generated_in(page)
    assert len(after) == 2 and after[0] == before[0]
    no_errors(page)
    page.get_by_text("Branched: 2 tokens cut away").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "chapter1-branch.png"))
    # the file is written when the button is clicked (deferred), from the page's view
    with page.expect_download(timeout=30_000) as download:
        page.get_by_role("button", name="Download the generation (JSON)").click()
    data = json.loads(open(download.value.path(), encoding="utf-8").read())
    assert [step["id"] for step in data["steps"]] == after


def test_chat_mode_wraps_the_text_in_the_chat_template(page, loaded):
    expect(page.get_by_role("textbox", name="Your text")).to_have_value(DEFAULT_TEXT)
    page.get_by_test_id("stSidebar").get_by_text("Chat mode").click()
    ids = loaded.tokenizer.apply_chat_template(
        [{"role": "user", "content": DEFAULT_TEXT}], add_generation_prompt=True,
        enable_thinking=False)["input_ids"]
    expect(page.get_by_text(f"tokens = {ids}")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Chat mode is on")).to_be_visible()
    wait_idle(page)
    no_errors(page)
    page.get_by_text("Chat mode is on").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "chapter1-chat.png"))


def test_a_click_while_the_last_one_is_being_handled_is_refused_visibly(server):
    """The guard (token_by_token/clicks.py): a click marks Generate busy before the server
    has answered; a second click then is refused (nothing is sent to the server) and
    counted; the new page makes the button ready again."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        sent = []  # every message the page sends to the server (each rerun request is one)
        page.on("websocket", lambda ws: ws.on("framesent", lambda frame: sent.append(frame)))
        page.goto(server)
        page.wait_for_selector(CHAPTER1, timeout=90_000)
        wait_idle(page)
        generate = switch_on_autoregression(page)
        before = len(sent)
        busy = generate.evaluate("""(button) => new Promise((done) => {
            const click = () => button.dispatchEvent(new MouseEvent("click", {
                bubbles: true, cancelable: true}));
            click();  // taken: the button turns busy at once, before the server answers
            setTimeout(() => {  // a second click, in a later task
                const state = {busy: button.getAttribute("aria-disabled"),
                               note: getComputedStyle(button.closest(".st-key-generate"),
                                                      "::after").content};
                click();  // refused: the first click has not reached the page's script yet
                done({...state, refused: window.tokenByTokenGuards.generate.refused});
            });
        })""")
        assert busy == {"busy": "true", "note": '"Running the model for this token…"',
                        "refused": 1}
        expect(page.get_by_text("1 generated so far")).to_be_visible(timeout=30_000)
        wait_idle(page)
        expect(generate).not_to_have_attribute("aria-disabled", "true")
        page.wait_for_timeout(500)
        assert len(sent) - before == 1  # one rerun request: the refused click sent nothing
        assert len(generated_in(page)) == 1
        generate.click()  # ready again
        expect(page.get_by_text("2 generated so far")).to_be_visible(timeout=30_000)
        no_errors(page)


def test_two_learners_in_two_browsers_never_see_each_others_work(server):
    with chromium() as browser:
        a = browser.new_context().new_page()
        b = browser.new_context().new_page()
        for page in (a, b):
            page.goto(server)
            page.wait_for_selector(CHAPTER1, timeout=90_000)
            wait_idle(page)
        type_text(a, "Learner A's own words")
        type_text(b, "Learner B types something else")
        generate = switch_on_autoregression(a)
        for n in (1, 2):
            generate.click()
            expect(a.get_by_text(f"{n} generated so far")).to_be_visible(timeout=30_000)
            wait_idle(a)
        b.reload()
        b.wait_for_selector(CHAPTER1, timeout=90_000)
        wait_idle(b)
        expect(b.get_by_role("textbox", name="Your text")).to_have_value(
            "Learner B types something else")
        expect(b.get_by_text("generated so far")).to_have_count(0)
        expect(a.get_by_role("textbox", name="Your text")).to_have_value(
            "Learner A's own words")
        assert len(generated_in(a)) == 2
        no_errors(a)
        no_errors(b)


def test_offline_with_an_empty_cache_walks_chapter_one_on_the_pocket_model(tmp_path):
    """No hub, nothing cached: the default model falls back to the pocket model, with a
    banner saying why, and the whole chapter works on it."""
    with streamlit_server(None, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path)) as url, \
            chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(url)
        expect(page.get_by_text("Running on the pocket model")).to_be_visible(timeout=90_000)
        wait_idle(page)
        generate = switch_on_autoregression(page)
        for n in (1, 2, 3):
            generate.click()
            expect(page.get_by_text(f"{n} generated so far")).to_be_visible(timeout=30_000)
            wait_idle(page)
        for section in ["2. Logits", "3. Filters and softmax", "4. Sampling",
                        "5. Autoregression"]:
            expect(page.get_by_role("heading", name=section).first).to_be_visible()
        no_errors(page)
        page.screenshot(path=str(ARTIFACTS / "pocket-fallback.png"))


def test_walk_chapter_three_every_control(server, loaded):
    """Chapter 3 in Chromium: open it, use each control of each section; every section stays
    once and in order, and no exception or traceback shows."""
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.goto(server + "/chapter-3")
        page.wait_for_selector("text=Chapter 3: The Speed of Inference", timeout=90_000)
        expect(page.get_by_role("heading", name="Conclusion")).to_be_visible(timeout=120_000)
        wait_idle(page)
        no_errors(page)

        def shown(text):
            expect(page.locator("p", has_text=text).first).to_be_visible(timeout=60_000)

        def settle():
            wait_idle(page)
            page.wait_for_timeout(300)
            wait_idle(page)
            no_errors(page)
            expect(page.get_by_text("Traceback")).to_have_count(0)

        def slide(label, presses=1, key="ArrowRight"):
            slider = page.locator('[data-testid="stSlider"]', has_text=label)
            slider.get_by_role("slider").focus()
            for _ in range(presses):
                page.keyboard.press(key)
            settle()

        def click(key):
            page.locator(f".st-key-{key} button:visible").first.click()
            settle()

        click("roofline_again")
        shown("This machine reads")
        slide("Tokens per sequence", key="Home")
        shown("Each sequence of 1 token keeps a KV cache")
        click("batching_again")
        slide("Block size (keys per block)", 2)  # 4 -> 16
        shown("in blocks of 16")
        page.get_by_text("4 bits, a scale per 128 numbers").click()
        settle()
        shown("Summary. 4-bit:")
        click("quantize_again")
        slide("Tokens guessed per round (k)", 2, key="ArrowLeft")  # 4 -> 2
        slide("Temperature (0 = greedy)", 7)  # 0.0 -> 0.7
        page.get_by_text("prompt lookup").click()
        settle()
        shown("The draft: prompt lookup.")
        click("speculative_again")
        slide("Block size (positions per block)", 1, key="ArrowLeft")  # 16 -> 8
        slide("Learners", 5)
        slide("Tokens per learner", 3)
        slide("Shared prefix (tokens)", 3)
        shown("35 learners with 259 tokens each")
        headers = [h.strip() for h in page.locator("h2").all_inner_texts()]
        numbered = [h.split(".")[0] for h in headers if h[:1].isdigit()]
        assert numbered == [str(n) for n in range(1, 7)], headers
        assert headers[-1] == "Conclusion", headers
        page.screenshot(path=str(ARTIFACTS / "chapter3.png"), full_page=True)
# --- the first download, watched ------------------------------------------------------

def test_a_throttled_first_download_shows_one_bar_and_the_tokenizer_first(tiny_dir, tmp_path):
    """A stand-in hub on a loopback port serves the tiny model at 60 kB/s: the page shows one
    bar for every file with its rate and time left, moving; Section 1 works with the
    tokenizer while the weights come; then the whole chapter, with no reload."""
    from standin import Hub
    hub = Hub({"test/tiny": tiny_dir}).start()
    hub.rate = 60_000
    weights = (tiny_dir / "model.safetensors").stat().st_size
    try:
        with streamlit_server("test/tiny", HF_ENDPOINT=hub.url,
                              HF_HUB_CACHE=str(tmp_path / "cache")) as url, chromium() as b:
            page = b.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(url)
            bar = page.locator('[data-testid="stProgress"]').filter(
                has_text="Downloading test/tiny")
            expect(bar).to_have_count(1, timeout=60_000)
            expect(page.get_by_text("1. Tokenizer")).to_be_visible(timeout=60_000)
            seen = []
            for _ in range(4):  # the bar moves, with a rate and the time left
                text = bar.inner_text(timeout=30_000)
                seen.append(text)
                page.wait_for_timeout(700)
            assert all("MB/s" in t and "left" in t for t in seen[1:]), seen
            assert len(set(seen)) > 1, seen
            got = sum(1 for r in hub.requests if r[1].endswith("model.safetensors"))
            assert got and "Conclusion" not in page.content()  # the weights are still coming
            type_text(page, "Hello tokens")  # Section 1 already reads the learner's text
            expect(page.get_by_text("tokens = [")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "download-tokenizer-first.png"),
                            full_page=True)
            expect(page.get_by_text("Conclusion")).to_be_visible(
                timeout=weights / hub.rate * 1000 + 60_000)
            expect(bar).to_have_count(0)
            no_errors(page)
    finally:
        hub.stop()


def test_a_connection_cut_mid_file_then_retry_in_the_browser(tiny_dir, tmp_path):
    """The network drops 200 kB into the weights and stays down: the page says where the
    download stopped (Section 1 still works); Retry, once the network is back, asks for the
    rest only and the chapter appears."""
    from standin import Hub
    hub = Hub({"test/tiny": tiny_dir}).start()
    hub.rate, hub.cut_after = 200_000, 200_000
    try:
        with streamlit_server("test/tiny", HF_ENDPOINT=hub.url,
                              HF_HUB_CACHE=str(tmp_path / "cache")) as url, chromium() as b:
            page = b.new_page(viewport={"width": 1280, "height": 1600})
            page.goto(url)
            expect(page.get_by_text("the connection dropped")).to_be_visible(timeout=90_000)
            expect(page.get_by_text("press Retry and it goes on from there")).to_be_visible()
            expect(page.get_by_text("1. Tokenizer")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "download-dropped.png"), full_page=True)
            hub.down = False
            page.get_by_role("button", name="Retry").click()
            expect(page.get_by_text("Conclusion")).to_be_visible(timeout=90_000)
            no_errors(page)
        ranges = [r[2] for r in hub.requests if r[2] and r[1].endswith("model.safetensors")]
        assert ranges[-1] == "bytes=200000-"
    finally:
        hub.stop()
