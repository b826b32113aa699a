"""Print descriptions back in SmartFrog notation (re-parseable) and as JSON with explicit kinds."""

from __future__ import annotations

import math
import re
from typing import Any, Final

from sd_actors.descriptions._functions import java_float_text
from sd_actors.descriptions._lexer import KEYWORDS, WORD_PATTERN
from sd_actors.descriptions._model import (
    ATTRIB,
    HERE,
    NO_DEFAULT,
    TBD,
    Apply,
    ComponentDescription,
    Double,
    Long,
    Reference,
    RefPart,
)

_WORD_RE: Final = re.compile(WORD_PATTERN)
_STRING_ESCAPES: Final = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\b": "\\b", "\r": "\\r",
                          "\f": "\\f"}


_NEEDS_ESCAPE: Final = re.compile(r'[\\"\x00-\x1f\x7f]')
"""A character format_string cannot copy as it is (most strings have none)."""


def format_string(text: str) -> str:
    if _NEEDS_ESCAPE.search(text) is None:
        return f'"{text}"'
    out = []
    for char in text:
        escaped = _STRING_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\{ord(char):03o}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def format_name(name: str) -> str:
    """An attribute or tag name: bare when it is a WORD, quoted otherwise."""
    if name not in KEYWORDS and _WORD_RE.fullmatch(name):
        return name
    return format_string(name)


def format_part(part: RefPart, *, first: bool) -> str:
    if part.name is None:
        return part.kind
    name = format_name(part.name)
    bare = (part.kind == ATTRIB and first) or (part.kind == HERE and not first)
    # A quoted name is only allowed after a keyword (ATTRIB "a b"), never as a bare part.
    if bare and not name.startswith('"'):
        return name
    return f"{part.kind} {name}"


def format_reference_path(reference: Reference) -> str:
    return ":".join(format_part(p, first=i == 0) for i, p in enumerate(reference.parts))


def format_value(value: object, indent: int = 0) -> str:
    """One value in SmartFrog notation (component descriptions span several lines)."""
    if isinstance(value, str):
        return format_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Long):
        return f"{int(value)}L"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        double = isinstance(value, Double)
        if math.isfinite(value):
            return java_float_text(value, single=not double) + ("D" if double else "")
        # The notation has no literal for these: an expression that evaluates to the same value.
        zero = "0.0D" if double else "0.0"
        numerator = "0.0" if math.isnan(value) else ("1.0" if value > 0 else "-1.0")
        return f"({numerator}{'D' if double else ''} / {zero})"
    if value is None:
        return "NULL"
    if value is TBD:
        return "TBD"
    if isinstance(value, bytes):
        return "#HEX#" + value.hex().upper() + "#"
    if isinstance(value, list):
        if all(_is_literal(v) for v in value):
            return "[|" + ", ".join(format_value(v, indent) for v in value) + "|]"
        # A literal vector holds only literals: anything else goes in a vector expression.
        return "[" + ", ".join(_in_expression(v, indent) for v in value) + "]"
    if isinstance(value, Reference):
        text = format_reference_path(value)
        if value.optional:
            default = "" if value.default is NO_DEFAULT else f"({format_value(value.default)}) "
            text = f"OPTIONAL {default}{text}"
        if value.data:
            text = f"DATA {text}"
        if value.lazy:
            text = f"LAZY {text}"
        return text
    if isinstance(value, Apply):
        return ("LAZY " if value.lazy else "") + value.kind + " " + _block(value.body, indent)
    if isinstance(value, ComponentDescription):
        return "extends " + ("" if value.eager else "DATA ") + _block(value, indent)
    return repr(value)


def _is_literal(value: object) -> bool:
    if isinstance(value, list):
        return all(_is_literal(v) for v in value)
    if isinstance(value, Reference):
        return value.data
    if isinstance(value, float):
        return math.isfinite(value)
    return not isinstance(value, ComponentDescription | Apply)


def _in_expression(value: object, indent: int) -> str:
    text = format_value(value, indent)
    return f"({text})" if isinstance(value, ComponentDescription) else text


def _block(cd: ComponentDescription, indent: int) -> str:
    lines = format_attributes(cd, indent + 1)
    if not lines:
        return "{}"
    return "{\n" + lines + "  " * indent + "}"


def format_attributes(cd: ComponentDescription, indent: int = 0) -> str:
    """The attributes of ``cd``, one per line, each ending in ``;`` (or ``}``)."""
    out: list[str] = []
    pad = "  " * indent
    for key, value in cd.raw_items():
        name = format_name(key) if isinstance(key, str) else ":".join(format_name(p) for p in key.parts)
        tags = cd.raw_tags(key)
        prefix = "[" + ", ".join(format_name(t) for t in sorted(tags)) + "] " if tags else ""
        text = format_value(value, indent)
        terminator = "" if isinstance(value, ComponentDescription) else ";"
        out.append(f"{pad}{prefix}{name} {text}{terminator}\n")
    return "".join(out)


def to_sf(config: ComponentDescription, name: str = "sfConfig") -> str:
    """``config`` as a description that re-parses to the same tree: ``sfConfig extends { … }``."""
    return f"{format_name(name)} {format_value(config)}\n"


# ---------------------------------------------------------------------------------------------- JSON
def to_json_value(value: object) -> Any:
    """A JSON-ready form with the kind of every value explicit (schema in descriptions/README.md)."""
    if isinstance(value, ComponentDescription):
        return {
            "kind": "component",
            "eager": value.eager,
            "attributes": [
                {"name": key, "tags": sorted(value.tags(key)), "value": to_json_value(item)}
                for key, item in value.items()
            ],
        }
    if isinstance(value, bool):
        return {"kind": "boolean", "value": value}
    if isinstance(value, Long):
        return {"kind": "long", "value": int(value)}
    if isinstance(value, int):
        return {"kind": "integer", "value": value}
    if isinstance(value, Double):
        return {"kind": "double", "value": float(value)}
    if isinstance(value, float):
        return {"kind": "float", "value": value}
    if isinstance(value, str):
        return {"kind": "string", "value": value}
    if value is None:
        return {"kind": "null"}
    if value is TBD:
        return {"kind": "tbd"}
    if isinstance(value, bytes):
        return {"kind": "bytes", "hex": value.hex()}
    if isinstance(value, list):
        return {"kind": "vector", "items": [to_json_value(v) for v in value]}
    if isinstance(value, Reference):
        result: dict[str, Any] = {
            "kind": "reference",
            "lazy": value.lazy,
            "data": value.data,
            "path": format_reference_path(value),
            "parts": [{"kind": p.kind, "name": p.name} if p.name is not None else {"kind": p.kind}
                      for p in value.parts],
        }
        if value.optional:
            result["optional"] = True
            if value.default is not NO_DEFAULT:
                result["default"] = to_json_value(value.default)
        return result
    if isinstance(value, Apply):
        return {"kind": value.kind.lower(), "lazy": value.lazy, "function": value.function,
                "body": to_json_value(value.body)}
    raise TypeError(f"cannot convert {type(value).__name__} to JSON")
