"""tools/kernel_channels.py: nbclient's wait for a kernel message, in short polls (no lost-wakeup hang)."""

import asyncio
import sys
import time
from pathlib import Path
from queue import Empty

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
import kernel_channels  # noqa: E402


class Channel:
    """A stand-in for AsyncZMQSocketChannel: its socket reports a message only from poll number ``ready_at`` on, and
    an unready poll returns at once (as a poll that missed its wake-up would, were it not waiting forever)."""

    def __init__(self, ready_at: int | None):
        self.ready_at, self.polls = ready_at, []
        self.socket = self

    async def poll(self, timeout_ms):
        self.polls.append(timeout_ms)
        if self.ready_at is not None and len(self.polls) >= self.ready_at:
            return 1
        await asyncio.sleep(min(timeout_ms, 5) / 1000)
        return 0

    async def _recv(self):
        return {"msg_type": "execute_reply"}

    get_msg = kernel_channels.get_msg


def test_an_unbounded_wait_polls_in_slices_until_the_message_is_there():
    ch = Channel(ready_at=4)
    assert asyncio.run(ch.get_msg()) == {"msg_type": "execute_reply"}
    assert len(ch.polls) == 4
    assert all(t is not None and 0 < t <= kernel_channels.SLICE_MS for t in ch.polls)  # never one endless poll


def test_a_timeout_still_raises_empty_at_its_deadline():
    ch = Channel(ready_at=None)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(ch.get_msg(timeout=0.05))
    assert 0.05 <= time.monotonic() - start < 2.0
    assert all(t <= 50 for t in ch.polls) and len(ch.polls) > 1
    ch = Channel(ready_at=None)
    with pytest.raises(Empty):  # timeout 0: one poll that does not wait
        asyncio.run(ch.get_msg(timeout=0))
    assert ch.polls == [0]


def test_install_patches_jupyter_clients_async_channel():
    channels = pytest.importorskip("jupyter_client.channels")
    kernel_channels.install()
    assert channels.AsyncZMQSocketChannel.get_msg is kernel_channels.get_msg
