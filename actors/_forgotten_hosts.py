"""The daemons this one forgot on purpose (``sd-actors forget-host``), kept in its state folder.

A forget takes a dead daemon out of the pool a majority is counted over (net/_membership.py). Kept
in memory only, a restart would undo it: started again with its old ``--peer`` list, the daemon
would count the forgotten host again, and a pool that had shrunk to the hosts left could lose its
majority and fence everything. So each forgotten host, with the incarnation it was forgotten in,
is written to ``forgotten-hosts.json`` before the forget is answered (a whole new file, fsynced,
then renamed over the old one: a crash leaves one or the other), and read when the daemon starts.
A forgotten host heard from again is taken off the list.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from sd_actors.actors._errors import DeploymentError
from sd_actors.net import InvalidAddress, check_address

FORGOTTEN_HOSTS_FILE: Final = "forgotten-hosts.json"


class ForgottenHostsError(DeploymentError):
    """``forgotten-hosts.json`` is not what the daemon writes: a JSON object, address → incarnation."""

    def __init__(self, path: Path, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}; fix it, or delete it: the daemons it lists may then count for the "
                         "majority again until they are forgotten again (sd-actors forget-host)")


class ForgottenHosts:
    """The list of forgotten hosts in one state folder: read when made, rewritten when it changes.

    :raises ForgottenHostsError: the file cannot be read or holds something else.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FORGOTTEN_HOSTS_FILE
        self._kept = _read(self.path)
        self._lock = threading.Lock()

    @property
    def kept(self) -> dict[str, int]:
        """What the file holds: address → the incarnation forgotten (-1: a ``--peer`` seed never heard from)."""
        return dict(self._kept)

    def keep(self, current: Callable[[], Mapping[str, int]]) -> None:
        """Write what ``current()`` returns if it is not what the file holds; on disk when this returns.

        ``current`` is called under this list's lock, so of two concurrent calls the newer list is
        written last.

        :raises OSError: it could not be written; the file is left as it was.
        """
        with self._lock:
            forgotten = dict(current())
            if forgotten != self._kept:
                _write(self.path, forgotten)
                self._kept = forgotten


def _read(path: Path) -> dict[str, int]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise ForgottenHostsError(path, f"cannot be read ({error})") from None
    try:
        content = json.loads(text)
    except json.JSONDecodeError as error:
        raise ForgottenHostsError(path, f"line {error.lineno} column {error.colno}: {error.msg}") from None
    if not isinstance(content, dict):
        raise ForgottenHostsError(path, "expected a JSON object (address: incarnation), found "
                                  f"{type(content).__name__}")
    for address, incarnation in content.items():
        try:
            check_address(address)
        except InvalidAddress as error:
            raise ForgottenHostsError(path, error.message) from None
        if isinstance(incarnation, bool) or not isinstance(incarnation, int) or incarnation < -1:
            raise ForgottenHostsError(path, f"the incarnation of {address} is {incarnation!r}, not an integer of -1 or "
                                      "more")
    return content


def _write(path: Path, forgotten: Mapping[str, int]) -> None:
    """Replace ``path`` whole: a new file, fsynced, renamed over the old one, and the rename fsynced."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(dict(sorted(forgotten.items())), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
