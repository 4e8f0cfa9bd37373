"""Random walks of real clicks and key presses in Chromium, on the app's own server: after
every action the page has no exception box and no "Traceback" anywhere, and every 5 actions
it shows, word for word, what a page run then draws (the fragments send only what changed:
token_by_token/unchanged.py).

Each walk is seeded (WALK_SEEDS walks, default 10, of WALK_STEPS actions, default 20); a
failure names the seed and the actions so far, and the screenshot of the failing page is in
tests/artifacts. The walks in AppTest (test_walks.py) cover every rule with invariants on the
values; these check that the real browser and server hold together under the same actions.
"""

import os
import random

import pytest
from browser import (
    ARTIFACTS,
    CHAPTER1,
    COUNT_MESSAGES,
    chromium,
    rerun_page,
    shown,
    streamlit_server,
    type_text,
    wait_idle,
)
from playwright.sync_api import TimeoutError as PlaywrightTimeout

WALK_SEEDS = int(os.environ.get("WALK_SEEDS", 10))
WALK_STEPS = int(os.environ.get("WALK_STEPS", 20))
TEXTS = ["a", "The quick brown fox", "The quick", "", "日本語 👍🏽", "**x** $y$",
         "The quick brown fox jumps over the lazy dog. " * 3]


@pytest.fixture(scope="module")
def server(tiny_dir):
    with streamlit_server(tiny_dir) as url:
        yield url


def visible(locator) -> bool:
    try:
        return locator.count() > 0 and locator.first.is_visible() and locator.first.is_enabled()
    except PlaywrightTimeout:
        return False


def slider(page, label: str):
    """The slider whose label is `label`, exactly (Chapter 2's Token, not "Tokens per …")."""
    label = page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True)
    return page.locator('[data-testid="stSlider"]').filter(has=label).get_by_role("slider")


def press_slider(page, label: str, rng: random.Random) -> None:
    handle = slider(page, label).first
    handle.focus()
    page.keyboard.press(rng.choice(["ArrowRight", "ArrowLeft", "End", "Home"]))


def actions(page):
    """The actions a learner can take on the page as it is now: name -> what it does."""
    button = page.get_by_role("button", name="Generate next token")
    found = {
        "chapter 1": lambda rng: page.get_by_role("link", name="Chapter 1").first.click(),
        "chapter 2": lambda rng: page.get_by_role("link", name="Chapter 2").first.click(),
        "chapter 3": lambda rng: page.get_by_role("link", name="Chapter 3").first.click(),
    }
    if visible(page.get_by_role("textbox", name="Your text")):
        found["type"] = lambda rng: type_text(page, rng.choice(TEXTS))
    for label in ("Temperature", "Top-K", "Top-P", "Min-P", "Token", "Layer", "Query head",
                  "Attention rows", "Positions shown",
                  # Chapter 3
                  "Tokens per sequence", "Block size (keys per block)",
                  "Tokens guessed per round", "Draft layers", "Block size (positions per block)",
                  "Learners", "Tokens per learner", "Shared prefix"):
        if visible(slider(page, label)):
            found[label] = lambda rng, label=label: press_slider(page, label, rng)
    for name in ("Resample", "Play", "Continue from here", "Measure again", "Run again"):
        if visible(page.get_by_role("button", name=name)):
            found[name] = lambda rng, name=name: rng.choice(
                page.get_by_role("button", name=name).all()).click()
    if visible(button):
        found["Generate"] = lambda rng: button.click()
    for toggle in ("Autoregressive mode", "Chat mode", "Halfway through each layer"):
        box = page.get_by_test_id("stCheckbox").filter(has_text=toggle)
        if visible(box) and box.first.locator("input").is_enabled():
            found[toggle] = lambda rng, box=box: box.first.click()
    for choice in ("8 bits, a scale per row", "4 bits, a scale per 128 numbers",
                   "the model's first layers", "prompt lookup"):  # Chapter 3's radios
        option = page.get_by_text(choice, exact=True)
        if visible(option):
            found[choice] = lambda rng, option=option: option.first.click()
    branch = page.get_by_text("Branch: take another token at any generated step")
    if visible(branch):
        found["open Branch"] = lambda rng: branch.click()
    return found


@pytest.mark.parametrize("seed", range(WALK_SEEDS))
def test_a_random_walk_never_shows_a_traceback(server, seed):
    rng, taken = random.Random(seed), []
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 1600})
        page.add_init_script(COUNT_MESSAGES)
        page.goto(server)
        page.wait_for_selector(CHAPTER1, timeout=90_000)
        wait_idle(page)
        for step in range(1, WALK_STEPS + 1):
            possible = actions(page)
            name = rng.choice(sorted(possible))
            taken.append(name)
            possible[name](rng)
            page.wait_for_timeout(150)  # the rerun starts
            wait_idle(page, timeout=120_000)
            broken = page.locator('[data-testid="stException"]').count() or \
                page.get_by_text("Traceback (most recent call last)").count()
            if broken:
                page.screenshot(path=str(ARTIFACTS / f"walk-{seed}.png"), full_page=True)
            assert not broken, (f"seed {seed}: {' → '.join(taken)}: " + " ".join(
                page.locator('[data-testid="stException"]').all_inner_texts())[:2000])
            if step % 5 == 0:  # what the fragments left on the page is what a page run draws
                # (token_by_token/unchanged.py sends only the elements that changed)
                drawn = shown(page)
                rerun_page(page)
                assert shown(page) == drawn, f"seed {seed}: {' → '.join(taken)}"
