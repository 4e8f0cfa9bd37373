"""The app's recorded runs (bench/recorder.py writes them; the replay pages and
bench/chapter2_draw.py read them): a run's delta messages as sent, each prefixed by its length
(4 bytes, big-endian)."""

from collections.abc import Iterator
from pathlib import Path

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

SIDEBAR = 1  # delta_path[0]: 0 the main area, 1 the sidebar (a replay page draws its own)


def encoded(messages: list[bytes]) -> bytes:
    """Serialized messages as one recorded run."""
    return b"".join(len(m).to_bytes(4, "big") + m for m in messages)


def messages(run: Path) -> Iterator[ForwardMsg]:
    """The messages of a recorded run, in the order they were sent."""
    data, at = run.read_bytes(), 0
    while at < len(data):
        size = int.from_bytes(data[at:at + 4], "big")
        yield ForwardMsg.FromString(data[at + 4:at + 4 + size])
        at += 4 + size


def main_area(run: Path, skip: set[str] = frozenset()) -> Iterator[ForwardMsg]:
    """A recorded run's messages to the main area, each element of a kind in `skip` sent as
    st.empty() in its place (what the browser pays for that kind: the replay without it)."""
    for msg in messages(run):
        if msg.metadata.delta_path[0] == SIDEBAR:
            continue
        if (msg.delta.WhichOneof("type") == "new_element"
                and msg.delta.new_element.WhichOneof("type") in skip):
            msg.delta.new_element.empty.SetInParent()
        yield msg
