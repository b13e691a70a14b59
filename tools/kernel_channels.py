"""Keep nbclient (papermill, ``tools/build_notebooks.py --execute``, ``tools/doctor.py``) from hanging on widget cells.

A cell that opens ipywidgets comms (notebook 00's guidance slider, 02's schedule explorer, 08's editor) can leave
nbclient waiting forever for an ``execute_reply`` that the kernel has already sent: the kernel is idle, the reply
sits in the shell socket, and ``jupyter_client``'s ``AsyncZMQSocketChannel.get_msg`` is still inside one
``await socket.poll(timeout)`` that never wakes (a readiness edge missed under ``zmq.asyncio``; open upstream as
jupyter/nbclient#312 and jupyter/nbconvert#1921, #2029). On a 2-core machine with two trainings keeping both cores
busy, notebook 00 hung at its slider cell in three papermill runs in a row, and a three-cell notebook holding that
cell in 20 of 21 runs (none of 11 with this fix). ``install()`` replaces that wait by polls of at most ``SLICE_MS``: each poll
reads the socket's state afresh, so a reply that has arrived is seen within one slice, and a finite ``timeout`` still
raises ``queue.Empty`` at its deadline. Nothing else changes; the papermill tests, both tools and the nbgrader config
(``tools/nbgrader_release.py``) install it before they run a notebook.
"""

from __future__ import annotations

import time
from queue import Empty

SLICE_MS = 500


async def get_msg(self, timeout: float | None = None) -> dict:
    """``AsyncZMQSocketChannel.get_msg``, waiting in polls of at most ``SLICE_MS`` instead of one long poll."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left_ms = SLICE_MS if deadline is None else int(1000 * max(0.0, deadline - time.monotonic()))
        if await self.socket.poll(min(SLICE_MS, left_ms)):
            return await self._recv()
        if deadline is not None and time.monotonic() >= deadline:
            raise Empty


def install() -> None:
    """Patch jupyter_client's asyncio channel class in this process (idempotent)."""
    from jupyter_client.channels import AsyncZMQSocketChannel

    AsyncZMQSocketChannel.get_msg = get_msg
