"""CURVE keys on disk: each daemon and each CLI user has a keypair and a list of the keys it trusts.

A key folder holds three files:

``curve.key``
    the secret key, 40 Z85 characters on one line, mode 0600. It is refused when group or
    others may read it, as ssh refuses an unprotected private key.
``curve.pub``
    the public key, 40 Z85 characters and a newline: ``cat curve.pub`` is what another host's
    ``sd-actors keys authorize`` takes.
``authorized_keys``
    the public keys allowed to connect, one a line, each optionally followed by a label
    (``host-b``, ``alice@laptop``); ``#`` starts a comment line. It is refused when group or
    others may write it: whoever can add a line can run anything on this host.

A daemon keeps its keys in its state directory; a user keeps theirs in
:func:`user_config_folder` (``$XDG_CONFIG_HOME/sd-actors``, or ``~/.config/sd-actors``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import zmq
from zmq.utils.z85 import Z85CHARS, Z85MAP

from sd_actors.net._errors import AuthorizedKeysError, InvalidKey, KeyFileError

KEY_LENGTH: Final = 40
"""Characters in a Z85-encoded CURVE key (32 bytes)."""

SECRET_KEY_FILE: Final = "curve.key"  # noqa: S105 -- a file name, not a secret
PUBLIC_KEY_FILE: Final = "curve.pub"
AUTHORIZED_KEYS_FILE: Final = "authorized_keys"

_Z85_ALPHABET: Final = frozenset(Z85CHARS)
_KEY_FILE_HEADER: Final = "# sd-actors CURVE secret key: never copy it to another host (share curve.pub)\n"
_AUTHORIZED_HEADER: Final = "# Public CURVE keys allowed to connect, one a line: KEY [label]\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyPair:
    """A CURVE keypair, both halves Z85-encoded (40 ASCII bytes each)."""

    public: bytes
    secret: bytes = field(repr=False)  # never in a log line or a traceback


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizedKey:
    """One line of ``authorized_keys``: a public key and the label its owner was given."""

    public: bytes
    label: str = ""


def generate_keypair() -> KeyPair:
    """A fresh random keypair (libzmq's ``zmq_curve_keypair``)."""
    public, secret = zmq.curve_keypair()
    return KeyPair(public=public, secret=secret)


def parse_key(key: str | bytes, *, source: str = "") -> bytes:
    """``key`` as Z85 bytes, after checking that it is 40 Z85 characters encoding 32 bytes.

    Keys seen before are answered from a small cache (every heartbeat carries its sender's key).

    :param source: where the key came from (``path:line``), for the error message.
    :raises InvalidKey: with the reason and a hint.
    """
    if isinstance(key, str):
        try:
            key = key.strip().encode("ascii")
        except UnicodeEncodeError:
            raise InvalidKey(key, "it contains characters that are not ASCII", source=source) from None
    elif isinstance(key, bytes):
        key = key.strip()
    else:
        raise InvalidKey(key, f"expected str or bytes, got {type(key).__name__}", source=source)
    problem = _z85_key_problem(key)
    if problem is not None:
        raise InvalidKey(key, problem, source=source)
    return key


@functools.lru_cache(maxsize=4096)
def _z85_key_problem(key: bytes) -> str | None:
    """What is wrong with ``key``, or None (memoized: every heartbeat carries its sender's key)."""
    if len(key) != KEY_LENGTH:
        return f"it has {len(key)} characters instead of {KEY_LENGTH}"
    strangers = sorted({chr(byte) for byte in key if byte not in _Z85_ALPHABET})
    if strangers:
        return f"{''.join(strangers)!r} are not Z85 characters"
    # Every group of 5 characters encodes 4 bytes, so its value must stay below 2**32.
    for start in range(0, KEY_LENGTH, 5):
        value = 0
        for byte in key[start : start + 5]:
            value = value * 85 + Z85MAP[byte]
        if value >= 2**32:
            return f"characters {start + 1}-{start + 5} do not encode 4 bytes"
    return None


def load_keypair(folder: Path) -> KeyPair:
    """The keypair in ``folder``; a daemon that must not run without keys calls this.

    :raises KeyFileError: there is no key (hint: ``sd-actors keys init``), it is readable by
        others, it is damaged, or ``curve.pub`` does not match it.
    """
    secret_path = folder / SECRET_KEY_FILE
    if not secret_path.exists():
        raise KeyFileError(
            secret_path,
            "no CURVE secret key",
            hint="create one with `sd-actors keys init` (or pass --insecure to run without security)",
        )
    return _read_keypair(secret_path, folder / PUBLIC_KEY_FILE)


def load_or_create_keypair(folder: Path) -> KeyPair:
    """The keypair in ``folder``, created first (with the folder, mode 0700) when there is none.

    Two processes creating keys at once end up with the same pair: the secret key file is
    linked into place only if it does not exist yet, and the loser reads the winner's.
    """
    secret_path = folder / SECRET_KEY_FILE
    public_path = folder / PUBLIC_KEY_FILE
    if not secret_path.exists():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        pair = generate_keypair()
        with contextlib.suppress(FileExistsError):
            _write_new_file(secret_path, _KEY_FILE_HEADER + pair.secret.decode("ascii") + "\n", mode=0o600)
            _replace_file(public_path, pair.public.decode("ascii") + "\n", mode=0o644)
    return _read_keypair(secret_path, public_path)


def authorized_keys(folder: Path) -> tuple[AuthorizedKey, ...]:
    """The keys listed in ``folder/authorized_keys``, in file order (none when there is no file).

    :raises AuthorizedKeysError: listing every line that is not a key, a comment or blank
        (with its line number), or the file is writable by group or others.
    """
    path = folder / AUTHORIZED_KEYS_FILE
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read()
    except FileNotFoundError:
        return ()
    except OSError as error:
        raise KeyFileError(path, f"cannot be read ({error.strerror})", hint="check the file's owner and mode") from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise KeyFileError(
            path,
            f"is writable by group or others (mode {stat.S_IMODE(mode):04o}), so anyone could authorize a key",
            hint=f"chmod go-w {path}",
        )
    keys = []
    bad_lines = []
    for number, line in enumerate(text.splitlines(), start=1):
        words = line.split(None, 1)
        if not words or words[0].startswith("#"):
            continue
        try:
            public = parse_key(words[0], source=f"{path}:{number}")
        except InvalidKey as error:
            bad_lines.append((number, line, f"not a CURVE public key: {error.problem}"))
            continue
        keys.append(AuthorizedKey(public=public, label=words[1].strip() if len(words) > 1 else ""))
    if bad_lines:
        raise AuthorizedKeysError(path, bad_lines=tuple(bad_lines))
    return tuple(keys)


def authorize(folder: Path, public_key: str | bytes, label: str = "") -> AuthorizedKey:
    """Add ``public_key`` to ``folder/authorized_keys`` (created, mode 0644, when missing).

    A key that is already listed is not added twice; its entry (with its first label) is
    returned. The label is kept on one line: runs of whitespace become one space.

    :raises InvalidKey: ``public_key`` is not a CURVE public key.
    :raises AuthorizedKeysError: the existing file has bad lines; fix them first.
    """
    public = parse_key(public_key, source="the key to authorize")
    label = " ".join(label.split())
    for entry in authorized_keys(folder):
        if entry.public == public:
            return entry
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / AUTHORIZED_KEYS_FILE
    entry = AuthorizedKey(public=public, label=label)
    line = public.decode("ascii") + (f" {label}" if label else "") + "\n"
    descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    with os.fdopen(descriptor, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell() == 0:
            handle.write(_AUTHORIZED_HEADER.encode("utf-8"))
        else:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write(line.encode("utf-8"))
    return entry


def user_config_folder(environ: Mapping[str, str] | None = None) -> Path:
    """Where a user's keys live: ``$XDG_CONFIG_HOME/sd-actors``, or ``~/.config/sd-actors``.

    :param environ: the environment to read (``os.environ`` when None); read at each call,
        never at import.
    """
    environ = os.environ if environ is None else environ
    config_home = environ.get("XDG_CONFIG_HOME", "")
    # The XDG base directory spec: a relative path in the variable is invalid and is ignored.
    if not config_home or not os.path.isabs(config_home):
        home = environ.get("HOME")
        config_home = os.path.join(home if home else str(Path.home()), ".config")
    return Path(config_home) / "sd-actors"


def _read_keypair(secret_path: Path, public_path: Path) -> KeyPair:
    try:
        with secret_path.open(encoding="ascii", errors="replace") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            text = handle.read()
    except OSError as error:
        raise KeyFileError(
            secret_path, f"cannot be read ({error.strerror})", hint="check the file's owner and mode"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            secret_path,
            f"the secret key is readable by group or others (mode {stat.S_IMODE(mode):04o})",
            hint=f"chmod 600 {secret_path}, and make a new key if others may have read it",
        )
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) != 1:
        raise KeyFileError(
            secret_path,
            f"expected one key line, found {len(lines)}",
            hint="restore the file from a backup, or delete it and run `sd-actors keys init` for a new key",
        )
    secret = parse_key(lines[0], source=str(secret_path))
    public = zmq.curve_public(secret)
    try:
        published = public_path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        _replace_file(public_path, public.decode("ascii") + "\n", mode=0o644)
        published = public.decode("ascii")
    if published.encode("ascii", errors="replace") != public:
        raise KeyFileError(
            public_path,
            f"does not hold the public half of {SECRET_KEY_FILE}",
            hint=f"delete {public_path}: it is written again from {SECRET_KEY_FILE}",
        )
    return KeyPair(public=public, secret=secret)


def _write_new_file(path: Path, text: str, *, mode: int) -> None:
    """Write ``path`` whole, with ``mode`` from the start; FileExistsError if it already exists."""
    temporary = _write_temporary(path, text, mode=mode)
    try:
        os.link(temporary, path)  # fails if path exists: a secret key is never overwritten
    finally:
        temporary.unlink(missing_ok=True)


def _replace_file(path: Path, text: str, *, mode: int) -> None:
    temporary = _write_temporary(path, text, mode=mode)
    try:
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _write_temporary(path: Path, text: str, *, mode: int) -> Path:
    # mkstemp creates the file 0600 under a fresh name, so a secret is never readable by
    # others, not even for a moment, and a file left by a crashed run is never in the way.
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return temporary
