"""ProgressStream: a request's lifecycle notices leave several to a frame, in order, none lost."""

from __future__ import annotations

import threading

from sd_actors.actors._progress import ProgressStream
from sd_actors.net._protocol import LifecycleNotice, LifecycleNotices

LONG = 60.0
"""A gather time no test waits for: frames leave because they are full, failed or closed."""


def notice(name: str, new: str = "started") -> LifecycleNotice:
    return LifecycleNotice(path=("app", name), old="deployed", new=new, time=0.0, host="h")


class Frames:
    """What a stream sent, frame by frame; ``arrived`` is set at each frame."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []
        self.arrived = threading.Event()

    def send(self, message: object) -> None:
        assert isinstance(message, LifecycleNotices)
        self.sent.append(tuple(n.path[-1] for n in message.notices))
        self.arrived.set()


def test_full_frames_leave_at_once_and_close_sends_the_rest_in_order() -> None:
    frames = Frames()
    stream = ProgressStream(frames.send, gather=LONG, limit=3)

    for name in ("a", "b", "c", "d", "e"):
        stream.add(notice(name))
    sent_before_close = list(frames.sent)
    stream.close()

    assert sent_before_close == [("a", "b", "c")]
    assert frames.sent == [("a", "b", "c"), ("d", "e")]


def test_a_failure_leaves_at_once_with_the_notices_before_it() -> None:
    frames = Frames()
    stream = ProgressStream(frames.send, gather=LONG)

    stream.add(notice("a"))
    stream.add(notice("b", new="failed"))
    sent_before_close = list(frames.sent)
    stream.close()

    assert sent_before_close == [("a", "b")]
    assert frames.sent == [("a", "b")]


def test_a_lone_notice_leaves_after_the_gather_time_without_close() -> None:
    frames = Frames()
    stream = ProgressStream(frames.send, gather=0.01)
    try:
        stream.add(notice("a"))

        assert frames.arrived.wait(5), "the notice never left"
        assert frames.sent == [("a",)]
    finally:
        stream.close()


def test_notices_after_close_are_dropped() -> None:
    frames = Frames()
    stream = ProgressStream(frames.send, gather=LONG)
    stream.close()

    stream.add(notice("late"))

    assert frames.sent == []


def test_close_returns_whenever_it_comes_while_the_sender_thread_wakes() -> None:
    # close() right after add() meets the sender thread at every point of its wake-up; once, the
    # thread cleared the wake-up close had just given it and slept for ever, and so did close().
    for _ in range(300):
        frames = Frames()
        stream = ProgressStream(frames.send, gather=0.0)
        stream.add(notice("a"))
        closer = threading.Thread(target=stream.close)
        closer.start()
        closer.join(5)

        assert not closer.is_alive(), "close() hung"
        assert frames.sent == [("a",)]
