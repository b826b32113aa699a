"""Tokens of the SmartFrog notation, with SmartFrog's longest-match rules."""

from __future__ import annotations

import base64
import bisect
import re
from pathlib import Path
from typing import Final, NamedTuple

from sd_actors.descriptions._errors import DescriptionError, DescriptionSyntaxError, SourceLocation
from sd_actors.descriptions._model import Double, Long, to_float32

KEYWORDS: Final = frozenset(
    {
        "extends", "true", "false", "LAZY", "DATA", "NULL", "TBD", "ROOT", "PARENT", "THIS", "HERE",
        "ATTRIB", "PROPERTY", "IPROPERTY", "ENVPROPERTY", "IENVPROPERTY", "CONSTANT", "HOST",
        "PROCESS", "OPTIONAL", "APPLY", "ASSERT", "IF", "THEN", "ELSE", "FI", "SWITCH", "ENDSWITCH",
        "VAR",
    }
)

_LETTER: Final = r"A-Za-z_$\u00a2-\u00a5\u00aa\u00b5\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
_EXP = r"(?:[eE][+-]?[0-9]+)"
# Alternatives are ordered so that Python's first match equals JavaCC's longest match.
WORD_PATTERN: Final = rf"[{_LETTER}][{_LETTER}0-9._\-+@\#~$%^&]*"
"""A WORD: an attribute name or reference part (``a-b``, ``test.timeout`` are single words)."""

# One match per token: the skipped whitespace and comments, then the token. Alternatives are
# ordered so that Python's first match equals JavaCC's longest match (``x|`` before the word ``x``).
_TOKEN_RE: Final = re.compile(
    rf"""
    (?P<skip>(?:[ \t\n\r\f]+|//[^\n]*|/\*.*?\*/)*)
    (?:
      (?P<word>(?!x\|){WORD_PATTERN})
    | (?P<string>"(?:[^"\\\n]|\\.)*")
    | (?P<float>-?(?:[0-9]+\.[0-9]*{_EXP}?|\.[0-9]+{_EXP}?|[0-9]+{_EXP})[fFdD]?|-?[0-9]+[fFdD])
    | (?P<int>-?[0-9]+[lL]?)
    | (?P<open_comment>/\*)
    | (?P<op>\[\||\|\]|\|\||--|->|\+\+|<>|==|!=|>=|<=|&&|x\||[-+*/%><!;,{{}}\[\]:()])
    | (?P<include>\#include\?|\#include|\#codebase)
    | (?P<mlstring>\#\#(?:[^#\\]|\\.)*\#)
    | (?P<bytes>\#(?:HEX|DEC|OCT|BIN|B64)\#[^#]*\#)
    | (?P<end>\Z)
    )
    """,
    re.VERBOSE | re.DOTALL,
)

_ESCAPES: Final = {"n": "\n", "t": "\t", "b": "\b", "r": "\r", "f": "\f", "\\": "\\", "'": "'", '"': '"'}
_ESCAPE_RE: Final = re.compile(r"\\([0-3][0-7]{0,2}|[4-7][0-7]?|.)", re.DOTALL)

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1
LONG_MIN: Final = -(2**63)
LONG_MAX: Final = 2**63 - 1


class Token(NamedTuple):
    """``kind`` is ``word``, ``string``, ``number``, ``bytes``, ``include``, ``eof``, or the text of a
    keyword or punctuation mark; ``value`` is the converted value; ``line``/``column`` are 1-based."""

    kind: str
    value: object
    offset: int
    text: str
    line: int
    column: int


class SourceText:
    """A description's text with offset → line/column conversion for error reports."""

    def __init__(self, text: str, path: Path | str) -> None:
        self.text = text
        self.path = path
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def location(self, offset: int) -> SourceLocation:
        line = bisect.bisect_right(self._line_starts, offset)
        return SourceLocation(self.path, line, offset - self._line_starts[line - 1] + 1)

    def line_text(self, line: int) -> str:
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)]

    def error(self, error: type[DescriptionError], message: str, offset: int, hint: str | None = None
              ) -> DescriptionError:
        at = self.location(offset)
        return error(message, at=at, source_line=self.line_text(at.line), hint=hint)


def tokenize(source: SourceText) -> list[Token]:
    """Split ``source`` into tokens; raise DescriptionSyntaxError at the first bad character."""
    text = source.text
    tokens: list[Token] = []
    append = tokens.append
    match = _TOKEN_RE.match
    count = text.count
    rfind = text.rfind
    keywords = KEYWORDS
    # tuple.__new__ straight away: a NamedTuple's own __new__ is a Python function, a call per token.
    new_token = tuple.__new__
    pos = 0
    line = 1
    line_start = 0
    while True:
        m = match(text, pos)
        if m is None:
            skipped = re.match(r"(?:[ \t\n\r\f]+|//[^\n]*|/\*.*?\*/)*", text[pos:], re.DOTALL)
            raise _bad_character(source, pos + (skipped.end() if skipped else 0))
        start = m.start(m.lastindex or 0) if m.lastgroup != "skip" else m.end()
        if start > pos:
            newlines = count("\n", pos, start)
            if newlines:
                line += newlines
                line_start = rfind("\n", pos, start) + 1
        kind = m.lastgroup
        lexeme = m.group(kind) if kind else ""
        column = start - line_start + 1
        if kind == "word":
            append(new_token(Token, (lexeme if lexeme in keywords else "word", lexeme, start, lexeme, line, column)))
        elif kind == "op":
            append(new_token(Token, (lexeme, lexeme, start, lexeme, line, column)))
        elif kind == "string":
            unescaped = _unescape(source, lexeme[1:-1], start + 1)
            append(new_token(Token, ("string", unescaped, start, lexeme, line, column)))
        elif kind == "int":
            append(new_token(Token, ("number", _integer(source, lexeme, start), start, lexeme, line, column)))
        elif kind == "float":
            append(new_token(Token, ("number", _float(lexeme), start, lexeme, line, column)))
        elif kind == "end":
            append(new_token(Token, ("eof", None, start, "", line, column)))
            return tokens
        elif kind == "include":
            append(new_token(Token, ("include", lexeme, start, lexeme, line, column)))
        elif kind == "mlstring":
            unescaped = _unescape(source, lexeme[2:-1], start + 2)
            append(new_token(Token, ("string", unescaped, start, lexeme, line, column)))
            newlines = lexeme.count("\n")
            if newlines:
                line += newlines
                line_start = start + lexeme.rfind("\n") + 1
        elif kind == "bytes":
            append(new_token(Token, ("bytes", _byte_array(source, lexeme, start), start, lexeme, line, column)))
        else:  # an unclosed /* comment
            raise source.error(DescriptionSyntaxError, "comment is never closed", start,
                               "end the comment with */")
        pos = m.end()


def _bad_character(source: SourceText, pos: int) -> DescriptionError:
    char = source.text[pos]
    if char == '"':
        return source.error(DescriptionSyntaxError, "string is not closed on this line", pos,
                            'close it with " (use ## ... # for text over several lines)')
    if source.text.startswith("##", pos):
        return source.error(DescriptionSyntaxError, "multi-line string is never closed", pos,
                            "close it with # (write \\# for a # inside it)")
    if char == "#":
        return source.error(DescriptionSyntaxError, "unexpected '#'", pos,
                            'directives are #include "file.sf" and #include? "file.sf"; byte arrays '
                            "are #HEX#...#, #DEC#...#, #OCT#...#, #BIN#...# or #B64#...#")
    shown = char if char.isprintable() else f"\\x{ord(char):02x}"
    return source.error(DescriptionSyntaxError, f"unexpected character {shown!r}", pos,
                        "names start with a letter, '_' or '$'; text goes in double quotes")


def _integer(source: SourceText, lexeme: str, pos: int) -> int:
    if len(lexeme) > 40:  # far beyond any Long; also keeps int() away from its digit limit
        raise source.error(DescriptionSyntaxError, f"number of {len(lexeme)} digits is out of range", pos,
                           "an Integer holds 10 digits and a Long 19; write big values as strings")
    if lexeme[-1] in "lL":
        value = int(lexeme[:-1])
        if not LONG_MIN <= value <= LONG_MAX:
            raise source.error(DescriptionSyntaxError, f"long {lexeme} is out of range", pos,
                               "a Long holds -9223372036854775808 to 9223372036854775807")
        return Long(value)
    value = int(lexeme)
    if not INT_MIN <= value <= INT_MAX:
        raise source.error(DescriptionSyntaxError, f"integer {lexeme} is out of range", pos,
                           f"an Integer holds {INT_MIN} to {INT_MAX}; write {lexeme}L for a Long")
    return value


def _float(lexeme: str) -> float:
    # Deliberate deviation: SmartFrog chops the last character even when there is no suffix
    # (1.5 -> 1.0, 2e3 -> error); sd-actors reads a suffix-less decimal as the Float it spells.
    suffix = lexeme[-1]
    if suffix in "dD":
        return Double(lexeme[:-1])
    # A Float holds 32 bits, as in Java: 0.1f is the float nearest 0.1, and prints back as 0.1.
    return to_float32(float(lexeme[:-1] if suffix in "fF" else lexeme))


def _unescape(source: SourceText, body: str, offset: int) -> str:
    if "\\" not in body:
        return body

    def replace(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "01234567":
            return chr(int(code, 8))
        if code in _ESCAPES:
            return _ESCAPES[code]
        if code == "#":
            return "#"
        raise source.error(DescriptionSyntaxError, f"unknown escape \\{code} in string", offset + m.start(),
                           'escapes are \\n \\t \\b \\r \\f \\\\ \\\' \\" and octal \\ooo; write \\\\ for a backslash')

    return _ESCAPE_RE.sub(replace, body)


def _byte_array(source: SourceText, lexeme: str, pos: int) -> bytes:
    base = lexeme[1:4]
    digits = "".join(lexeme[5:-1].split())
    try:
        if base == "HEX":
            return bytes.fromhex(digits)
        if base == "B64":
            return base64.b64decode(digits, validate=True)
        radix, width = {"DEC": (10, 3), "OCT": (8, 3), "BIN": (2, 8)}[base]
        if len(digits) % width:
            raise ValueError(f"needs groups of {width} digits")
        return bytes(int(digits[i : i + width], radix) for i in range(0, len(digits), width))
    except ValueError as error:
        raise source.error(DescriptionSyntaxError, f"malformed #{base}# byte array: {error}", pos,
                           "HEX takes pairs of hex digits, DEC/OCT groups of 3 digits, BIN groups of 8 bits, "
                           "B64 base64") from None
