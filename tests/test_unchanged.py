"""token_by_token/unchanged.py apart from a browser: what stays a fragment's, and what a new
run's start drops from the messages not sent yet. (In a browser: test_browser.py's
test_a_fragment_that_draws_less_leaves_nothing_stale and the walks.)"""

from streamlit.proto.Block_pb2 import Block
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.runtime.forward_msg_queue import ForwardMsgQueue

from token_by_token import unchanged


def delta(path, fragment="", block=None, text=None) -> ForwardMsg:
    msg = ForwardMsg()
    msg.metadata.delta_path[:] = path
    if block is not None:
        msg.delta.add_block.CopyFrom(block)
    else:
        msg.delta.new_element.markdown.body = text
    msg.delta.fragment_id = fragment
    return msg


def test_a_dropped_container_takes_the_pages_own_elements_inside_it_along():
    """A fragment's run starts while the last run's container is not sent yet: Streamlit drops
    the container (the fragment's) and would keep the page's own elements inside it, which
    the browser can't place (a delta path with no parent)."""
    queue = ForwardMsgQueue()
    column = Block()
    column.column.SetInParent()
    for msg in [delta([0, 1, 0], "F", block=column), delta([0, 1, 0, 0], text="inside"),
                delta([0, 2], text="elsewhere"), delta([0, 1, 0, 1], "F", text="its own"),
                delta([1, 0], "G", text="another fragment's")]:
        queue.enqueue(msg)
    queue.clear(retain_lifecycle_msgs=True, fragment_ids_this_run=["F"])
    kept = [m.delta.new_element.markdown.body for m in queue._queue]
    assert kept == ["elsewhere", "another fragment's"]


def test_containers_that_act_as_widgets_or_wrap_a_fragment_stay_the_fragments():
    plain, columns, tabs, keyed, wrapper = Block(), Block(), Block(), Block(), Block()
    plain.vertical.SetInParent()
    columns.horizontal.SetInParent()
    tabs.tab_container.SetInParent()
    keyed.tab_container.id = "lesson-tabs"  # st.tabs(..., key=..., on_change="rerun")
    wrapper.transparent.SetInParent()  # Streamlit's wrapper: a write to an outside container
    assert [unchanged._fragments_own(b) for b in (plain, columns, tabs, keyed, wrapper)] == \
        [False, False, False, True, True]
