"""Lines a process prints, read with a timeout: how tests wait for a process to be ready."""

from __future__ import annotations

import queue
import threading
from typing import IO


class LineReader:
    """Reads a text stream line by line in a background thread; ``read_line`` waits with a timeout.

    The thread reads to the end of the stream, so a chatty process never blocks on a full pipe
    even when the test only cares about its first line. It ends when the process does.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="LineReader", daemon=True)
        self._thread.start()

    def read_line(self, *, timeout: float) -> str:
        """The next line, without its newline.

        :raises TimeoutError: no complete line within ``timeout`` seconds.
        :raises EOFError: the stream ended (the process exited or closed it) before another line.
        """
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no line within {timeout} s") from None
        if line is None:
            self._lines.put(None)  # every later call sees the end too
            raise EOFError("the stream ended before another line")
        return line.removesuffix("\n")

    def _pump(self, stream: IO[str]) -> None:
        try:
            for line in stream:
                self._lines.put(line)
        except (OSError, ValueError):
            pass  # the stream was closed under us when the hosts were torn down: that is its end
        finally:
            self._lines.put(None)
