"""token_by_token/threads.py and locks.FORWARD_LOCK: a script run's own tensor operations on
one torch thread, every forward on every core (threads.cores()), the decode steps' long-lived
thread on every core whatever a page's thread set before it started."""

import sys
import threading

import torch
from helpers import run_app

from token_by_token import threads
from token_by_token.locks import FORWARD_LOCK, on_the_torch_thread


def in_a_new_thread(fn):
    """fn() in a thread of its own, as Streamlit runs each script run; its result."""
    out = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def test_this_machine_has_cores_to_share():
    # every test below means something only if a forward has more than one thread (the CI
    # machine has 2 cores)
    assert threads.cores() >= 2


def test_a_page_computes_on_one_thread_and_its_forwards_on_every_core():
    def page_run():
        threads.for_the_page()
        page = torch.get_num_threads()
        with FORWARD_LOCK:
            forward = torch.get_num_threads()
        return page, forward, torch.get_num_threads()
    assert in_a_new_thread(page_run) == (threads.PAGE, threads.cores(), threads.PAGE)
    assert torch.get_num_threads() == threads.cores()  # another thread's setting stays its own


def test_the_torch_thread_keeps_every_core_whatever_a_page_set():
    in_a_new_thread(threads.for_the_page)  # (a new thread would start with one)
    assert in_a_new_thread(lambda: on_the_torch_thread(torch.get_num_threads)) == \
        threads.cores()


def test_a_failed_forward_gives_the_lock_and_the_threads_back():
    def page_run():
        threads.for_the_page()
        try:
            with FORWARD_LOCK:
                raise RuntimeError("a forward failed")
        except RuntimeError:
            pass
        return torch.get_num_threads(), FORWARD_LOCK.locked()
    assert in_a_new_thread(page_run) == (threads.PAGE, False)


def test_every_script_run_sets_its_own_threads(monkeypatch):
    """The page's run (main.py) and every chapter fragment (chapter._fragment, which a control
    reruns alone, in a new thread: without it, that thread would start with whatever count a
    thread set last) set their thread's count before drawing anything."""
    callers = []
    for_the_page = threads.for_the_page
    monkeypatch.setattr(threads, "for_the_page", lambda: callers.append(
        sys._getframe(1).f_code.co_name) or for_the_page())
    run_app()
    assert callers[0] == "<module>" and "_fragment" in callers, callers


def test_a_browser_elsewhere_leaves_the_page_every_core(monkeypatch):
    """The page's own operations take one thread only when the learner's browser shares this
    machine (a localhost connection); a served app's learners are elsewhere."""
    from types import SimpleNamespace

    from streamlit.runtime import context
    for address, here in [("127.0.0.1", True), ("::1", True), ("10.0.0.7", False)]:
        monkeypatch.setattr(context, "_get_client_context",
                            lambda address=address: SimpleNamespace(remote_ip=address))
        assert threads.browser_here() is here, address
        assert in_a_new_thread(lambda: (threads.for_the_page(), torch.get_num_threads())[1]) \
            == (threads.PAGE if here else threads.cores()), address
