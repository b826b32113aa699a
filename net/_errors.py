"""Every problem net/ reports is a WireError that says what went wrong, where, and how to fix it.

A frame from the network that cannot be decoded, a key file that cannot be read and an
``authorized_keys`` line that cannot be parsed are all WireErrors, so a daemon can catch the one
base, log the message and carry on. The parts stay available as attributes (``hint``,
``field``, ``line``, ...) so that nobody has to parse the text.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import Final

# Bytes from the network end up in error messages and logs: cut what is shown so that a peer
# cannot flood a log with one huge kind name.
_SHOWN_CHARACTERS: Final = 60


def shorten(value: object) -> str:
    """``repr(value)``, cut to a length that fits in one log line."""
    text = repr(value)
    if len(text) <= _SHOWN_CHARACTERS:
        return text
    return text[: _SHOWN_CHARACTERS - 3] + "..."


class WireError(Exception):
    """Something net/ was given is not acceptable: a frame, a message, a key or a key file."""

    def __init__(self, message: str, *, hint: str) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message}; hint: {hint}")


# -- frames ---------------------------------------------------------------------------------------


class MalformedFrame(WireError):
    """The bytes are not one msgpack map with the keys ``v``, ``k``, ``i`` and ``b``."""

    def __init__(self, problem: str, *, hint: str | None = None) -> None:
        self.problem = problem
        super().__init__(
            f"malformed frame: {problem}",
            hint=hint or "the peer does not speak the sd-actors wire protocol, or the frame was damaged",
        )


class UnsupportedVersion(WireError):
    """The frame is written in another version of the wire protocol."""

    def __init__(self, found: object, *, supported: int) -> None:
        self.found = found
        self.supported = supported
        super().__init__(
            f"frame has protocol version {shorten(found)}, this side speaks version {supported}",
            hint="run the same sd-actors release on both hosts",
        )


class FrameTooLarge(WireError):
    """The frame is longer than the receiver accepts."""

    def __init__(self, size: int, *, max_size: int) -> None:
        self.size = size
        self.max_size = max_size
        super().__init__(
            f"frame of {size} bytes is over the limit of {max_size} bytes",
            hint="send smaller messages, or raise the receiver's max_size (and its ZMQ_MAXMSGSIZE)",
        )


class UnknownKind(WireError):
    """The frame names a message kind that is not in the registry."""

    def __init__(self, kind: object, *, known: Iterable[str]) -> None:
        self.kind = kind
        known_kinds = sorted(known)
        close = difflib.get_close_matches(kind, known_kinds, n=1) if isinstance(kind, str) else []
        if close:
            hint = f"did you mean {close[0]!r}?"
        else:
            hint = "the peer runs another sd-actors release, or the message class is missing from the registry"
        super().__init__(f"unknown message kind {shorten(kind)}", hint=hint)


class UnregisteredMessage(WireError):
    """``encode`` was given an object whose class is not in the registry."""

    def __init__(self, message_class: type) -> None:
        self.message_class = message_class
        name = message_class.__qualname__
        super().__init__(
            f"cannot encode {name}: its class is not in this MessageRegistry",
            hint=f"decorate {name} with @wire_message('kind') and pass it to MessageRegistry",
        )


class BadField(WireError):
    """A field of a message holds a value of the wrong type.

    ``field`` is the path from the message kind down to the value (``deploy_vm.vm.disks[2]``),
    ``expected`` and ``found`` describe the type the field takes and what it held.
    """

    def __init__(
        self, field: str, *, expected: str, found: str, message: str | None = None, hint: str | None = None
    ) -> None:
        self.field = field
        self.expected = expected
        self.found = found
        super().__init__(
            message or f"field {field!r}: expected {expected}, found {found}",
            hint=hint or "the sender and the receiver disagree about the message; run the same release on both",
        )


class MissingField(BadField):
    """A required field of a message is absent from the frame."""

    def __init__(self, field: str, *, expected: str) -> None:
        super().__init__(
            field, expected=expected, found="nothing", message=f"field {field!r} ({expected}) is missing"
        )


class UnexpectedField(BadField):
    """The frame carries a field the message class does not have."""

    def __init__(self, field: str, *, known: Iterable[str]) -> None:
        self.known = tuple(sorted(known))
        close = difflib.get_close_matches(field.rsplit(".", 1)[-1], self.known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "the sender runs another sd-actors release"
        listed = ", ".join(self.known) or "none"
        super().__init__(
            field,
            expected=f"one of {listed}",
            found="an unknown field",
            message=f"unknown field {field!r} (the message's fields: {listed})",
            hint=hint,
        )


class InvalidMessageClass(WireError):
    """A class given to the registry cannot travel on the wire as it is declared."""

    def __init__(self, cls: type, problem: str, *, hint: str) -> None:
        self.message_class = cls
        super().__init__(f"message class {cls.__qualname__}: {problem}", hint=hint)


# -- keys -----------------------------------------------------------------------------------------


class InvalidKey(WireError):
    """A CURVE key is not 40 characters of Z85."""

    def __init__(self, key: object, problem: str, *, source: str = "") -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(
            f"{where}invalid CURVE key {shorten(key)}: {problem}",
            hint="a key is 40 Z85 characters, as printed by `sd-actors keys init` (the curve.pub file)",
        )


class KeyFileError(WireError):
    """A key file cannot be read, does not hold a key, or is readable by others."""

    def __init__(self, path: Path, problem: str, *, hint: str) -> None:
        self.path = path
        super().__init__(f"{path}: {problem}", hint=hint)


class AuthorizedKeysError(WireError):
    """Lines of an ``authorized_keys`` file are not ``KEY [label]``, a comment or blank.

    Every bad line is reported at once, so that one edit fixes the file: ``bad_lines`` holds
    ``(line number, text, problem)`` for each, and ``line`` is the first bad line's number.
    """

    def __init__(self, path: Path, *, bad_lines: tuple[tuple[int, str, str], ...]) -> None:
        self.path = path
        self.bad_lines = bad_lines
        self.line = bad_lines[0][0]
        reports = "; ".join(f"{path}:{number}: {problem}: {shorten(text)}" for number, text, problem in bad_lines)
        super().__init__(
            reports,
            hint="each line is a 40-character Z85 public key, then an optional label; '#' starts a comment",
        )
