"""Wake-ups between one node's processes (``objectjobs.wakeups``), over real sockets."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from objectjobs.wakeups import NodeWakeups


async def woken(event: asyncio.Event, within: float = 5.0) -> bool:
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def test_notify_wakes_every_other_listener_but_not_itself(tmp_path: Path) -> None:
    wake = tmp_path / "wake"
    listeners = [NodeWakeups(wake) for _ in range(3)]
    events = [asyncio.Event() for _ in listeners]
    for listener, event in zip(listeners, events, strict=True):
        listener.listen(event.set)
    try:
        listeners[0].notify()
        assert await woken(events[1]) and await woken(events[2])
        await asyncio.sleep(0.1)
        assert not events[0].is_set()  # its own socket is skipped
        events[1].clear()
        for _ in range(5000):  # more than a socket buffer holds: extra wake-ups are dropped
            listeners[2].notify()
        assert await woken(events[1])
        events[1].clear()
        await asyncio.sleep(0.1)  # the backlog was read in one go: no wake-up left pending
        assert not events[1].is_set()
    finally:
        for listener in listeners:
            listener.close()
    assert list(wake.iterdir()) == []  # each removed its socket


async def test_a_directory_path_too_long_for_a_socket_address_still_works(
    tmp_path: Path,
) -> None:
    wake = tmp_path.joinpath(*["a-rather-long-directory-name"] * 5, "wake")
    assert len(str(wake)) > 108
    listener, sender = NodeWakeups(wake), NodeWakeups(wake)
    event = asyncio.Event()
    listener.listen(event.set)
    try:
        assert [p.suffix for p in wake.iterdir()] == [".sock"]
        sender.notify()
        assert await woken(event)
    finally:
        listener.close()
        sender.close()


async def test_a_socket_left_by_a_killed_process_is_removed(tmp_path: Path) -> None:
    wake = tmp_path / "wake"
    wake.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dead.bind(str(wake / "123-deadbeef.sock"))
    dead.close()  # what a kill -9 leaves: the file, with nobody reading
    (wake / "notes.txt").write_text("not a socket of ours")
    listener, sender = NodeWakeups(wake), NodeWakeups(wake)
    event = asyncio.Event()
    listener.listen(event.set)
    try:
        sender.notify()
        assert await woken(event)
        names = sorted(p.name for p in wake.iterdir())
        assert "123-deadbeef.sock" not in names and "notes.txt" in names
    finally:
        listener.close()
        sender.close()


async def test_without_a_usable_directory_nothing_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    wakeups = NodeWakeups(blocker / "wake")  # under a file: cannot be made
    wakeups.listen(lambda: None)  # logs and leaves wake-ups off
    wakeups.notify()
    wakeups.close()
    NodeWakeups(tmp_path / "never-made").notify()
