"""The language's functions (``sum``, ``concat``, operators, …) with Java's value semantics."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, cast

from sd_actors.descriptions import _names
from sd_actors.descriptions._model import (
    Apply,
    ComponentDescription,
    Double,
    Long,
    Reference,
    to_float32,
    value_kind,
    values_equal,
)

if TYPE_CHECKING:
    from sd_actors.descriptions._errors import SourceLocation


class FunctionFailed(Exception):
    """Raised by a function; the resolver turns it into a DescriptionError with the location."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class EvaluationContext(Protocol):
    """What functions may ask of the resolver that evaluates them."""

    def next_counter(self, base: int | None) -> int: ...

    def resolve_reference_at(self, reference: Reference, where: ComponentDescription) -> object: ...

    def parse_reference(self, text: str, location: SourceLocation | None) -> Reference: ...


Function = Callable[[ComponentDescription, list[object], EvaluationContext], object]

_RANK: Final = {"Integer": 0, "Long": 1, "Float": 2, "Double": 3}
# The number kinds by exact type: the common case, spared value_kind's chain of isinstance.
_NUMBER_KINDS: Final[dict[type, str]] = {int: "Integer", Long: "Long", float: "Float", Double: "Double"}
_INTEGER_MIN: Final = -(2**31)
_INTEGER_MAX: Final = 2**31 - 1


Number = int | float


def _number_kind(value: object, function: str) -> str:
    kind = value_kind(value)
    if kind not in _RANK:
        raise FunctionFailed(f"{function} needs numbers, got {kind} {format_java(value)}",
                             "check the operands: every one must be an Integer, Long, Float or Double")
    return kind


def _as_kind(value: Number, kind: str) -> Number:
    if kind == "Integer":
        if type(value) is int and _INTEGER_MIN <= value <= _INTEGER_MAX:
            return value  # nothing to convert or wrap
        return _wrap(int(value), 32)
    if kind == "Long":
        return Long(_wrap(int(value), 64))
    if kind == "Float":
        return to_float32(float(value))
    return Double(float(value))


def _wrap(value: int, bits: int) -> int:
    # Java integer arithmetic wraps around on overflow.
    mask = (1 << bits) - 1
    value &= mask
    return value - (1 << bits) if value >> (bits - 1) else value


def _numbers(function: str, args: list[object]) -> tuple[str, list[Number]]:
    """The arguments as numbers, and the kind Java's promotion gives their result."""
    if not args:
        raise FunctionFailed(f"{function} needs at least one argument")
    kind = "Integer"
    rank = 0
    for argument in args:
        argument_kind = _NUMBER_KINDS.get(type(argument)) or _number_kind(argument, function)
        argument_rank = _RANK[argument_kind]
        if argument_rank > rank:
            kind, rank = argument_kind, argument_rank
    # Every argument is now known to be an int or a float (_number_kind raises otherwise).
    return kind, cast(list[Number], args)


def _sum(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    kind, numbers = _numbers("sum", args)
    total: Number = 0
    for n in numbers:
        total = _as_kind(total + n, kind)
    return _as_kind(total, kind)


def _product(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    kind, numbers = _numbers("product", args)
    total: Number = 1
    for n in numbers:
        total = _as_kind(total * n, kind)
    return _as_kind(total, kind)


def _operands(body: ComponentDescription, function: str) -> tuple[str, Number, Number]:
    attributes = body.raw_keys_set()
    if "left" not in attributes or "right" not in attributes:
        raise FunctionFailed(f"{function} needs the attributes 'left' and 'right'")
    kind, (left, right) = _numbers(function, [attributes["left"], attributes["right"]])
    return kind, left, right


def _binary(body: ComponentDescription) -> tuple[object, object]:
    attributes = body.raw_keys_set()
    if "left" not in attributes or "right" not in attributes:
        raise FunctionFailed("needs the attributes 'left' and 'right'")
    return attributes["left"], attributes["right"]


def _minus(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    kind, left, right = _operands(body, "minus")
    return _as_kind(left - right, kind)


def _divide(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    kind, left, right = _operands(body, "divide")
    if kind in ("Integer", "Long"):
        if right == 0:
            raise FunctionFailed("division by zero", "the divisor of an integer division must not be 0")
        quotient = abs(int(left)) // abs(int(right))
        return _as_kind(quotient if (left < 0) == (right < 0) else -quotient, kind)
    if right == 0:
        return _as_kind(math.nan if left == 0 else math.copysign(math.inf, left) * math.copysign(1, right), kind)
    return _as_kind(left / right, kind)


def _mod(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    kind, left, right = _operands(body, "mod")
    if kind in ("Integer", "Long"):
        if right == 0:
            raise FunctionFailed("modulo by zero", "the divisor of % must not be 0")
        remainder = abs(int(left)) % abs(int(right))
        return _as_kind(remainder if left >= 0 else -remainder, kind)
    return _as_kind(math.fmod(left, right) if right != 0 else math.nan, kind)


def _compare(name: str, test: Callable[[int], bool]) -> Function:
    def compare(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
        left, right = _binary(body)
        if type(left) in _NUMBER_KINDS and type(right) in _NUMBER_KINDS:
            return test((left > right) - (left < right))  # type: ignore[operator]
        if isinstance(left, str) and isinstance(right, str):
            return test((left > right) - (left < right))
        lk, rk = value_kind(left), value_kind(right)
        if lk not in _RANK or rk not in _RANK:
            raise FunctionFailed(f"{name} compares numbers or strings, got {lk} and {rk}")
        _, (a, b) = _numbers(name, [left, right])
        return test((a > b) - (a < b))

    return compare


def _equals(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    left, right = _binary(body)
    return values_equal(left, right)


def _not_equals(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    left, right = _binary(body)
    return not values_equal(left, right)


def _booleans(name: str, args: list[object]) -> list[bool]:
    for a in args:
        if not isinstance(a, bool):
            raise FunctionFailed(f"{name} needs booleans, got {value_kind(a)} {format_java(a)}")
    return args  # type: ignore[return-value]


def _and(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    return all(_booleans("and", args))


def _or(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    return any(_booleans("or", args))


def _xor(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    return sum(_booleans("xor", args)) % 2 == 1


def _implies(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    values = _booleans("implies", args)
    result = values[0] if values else True
    for v in values[1:]:
        result = (not result) or v
    return result


def _not(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    if "data" not in body:
        raise FunctionFailed("not needs the attribute 'data'")
    return not _booleans("not", [body["data"]])[0]


def _concatenate(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    return "".join([format_java(a) for a in args])


def _append(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    result: list[object] = []
    for a in args:
        if isinstance(a, list):
            result.extend(a)
    return result


def _vector(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    return list(args)


def _format(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    template = body.get("format")
    if not isinstance(template, str):
        raise FunctionFailed("formatString needs a string attribute 'format'")
    out: list[str] = []
    i = 0
    while i < len(template):
        char = template[i]
        if char == "$" and i + 1 < len(template) and template[i + 1].isdigit():
            value = body.get(f"s{template[i + 1]}")
            # As in SmartFrog, only string arguments are substituted; anything else becomes "".
            out.append(value if isinstance(value, str) else "")
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _if_then_else(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    for name in ("if", "then", "else"):
        if name not in body:
            raise FunctionFailed(f"ifThenElse needs the attribute {name!r}")
    condition = body["if"]
    if not isinstance(condition, bool):
        raise FunctionFailed(f"the IF condition must be a boolean, got {value_kind(condition)}")
    return body["then"] if condition else body["else"]


def _switch(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    case = 0
    while f"sfCaseIf{case}" in body:
        condition = body[f"sfCaseIf{case}"]
        if not isinstance(condition, bool):
            raise FunctionFailed(f"SWITCH case {case + 1}: the IF condition must be a boolean")
        if condition:
            return body[f"sfCaseThen{case}"]
        case += 1
    raise FunctionFailed("no SWITCH case is true", "add a last case IF true THEN default-value")


def _system(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    if "system" not in body:
        raise FunctionFailed("System needs the attribute 'system' (its result)")
    return body["system"]


def _next(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    base = body.get("base")
    return ctx.next_counter(base if isinstance(base, int) and not isinstance(base, bool) else None)


def _random(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    seed = body.get("seed")
    generator = random.Random(seed if isinstance(seed, int) else None)
    minimum, maximum = body.get("min", 0), body.get("max", 2**31 - 1)
    if body.get("integer", True) is False:
        return generator.random()
    if not isinstance(minimum, int) or not isinstance(maximum, int) or minimum > maximum:
        raise FunctionFailed("random needs integers min <= max")
    return generator.randint(minimum, maximum)


def _date(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    return time.strftime("%a %b %d %H:%M:%S %Z %Y")


def _user_input(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    # Descriptions are resolved by daemons and scripts too: never block on a terminal.
    if "default" in body:
        return body["default"]
    raise FunctionFailed("userinput has no 'default' and sd-actors never prompts while resolving",
                         "give it a default, or set the value with --set / -D")


def _ref(body: ComponentDescription, args: list[object], ctx: EvaluationContext) -> object:
    text = body.get("reference")
    if isinstance(text, Reference):
        reference = text
    elif isinstance(text, str):
        reference = ctx.parse_reference(text, body.location)
    else:
        raise FunctionFailed("ref needs a string attribute 'reference'")
    if body.get("lazy") is True:
        return reference.with_flags(lazy=True)
    return ctx.resolve_reference_at(reference, body)


FUNCTIONS: Final[dict[str, Function]] = {
    _names.function("Sum"): _sum,
    _names.function("Product"): _product,
    _names.function("Minus"): _minus,
    _names.function("Divide"): _divide,
    _names.function("Mod"): _mod,
    _names.function("EQ"): _equals,
    _names.function("NE"): _not_equals,
    _names.function("GE"): _compare("GE", lambda o: o >= 0),
    _names.function("GT"): _compare("GT", lambda o: o > 0),
    _names.function("LE"): _compare("LE", lambda o: o <= 0),
    _names.function("LT"): _compare("LT", lambda o: o < 0),
    _names.function("And"): _and,
    _names.function("Or"): _or,
    _names.function("Xor"): _xor,
    _names.function("Implies"): _implies,
    _names.function("Not"): _not,
    _names.function("Concatenate"): _concatenate,
    _names.function("Append"): _append,
    _names.function("Vector"): _vector,
    _names.function("Format"): _format,
    _names.function("IfThenElse"): _if_then_else,
    _names.function("Switch"): _switch,
    _names.function("SystemComponent"): _system,
    _names.function("Next"): _next,
    _names.function("Random"): _random,
    _names.function("Date"): _date,
    _names.function("UserInput"): _user_input,
    _names.function("Ref"): _ref,
}

# Attributes of a function body that configure it and are not arguments.
NON_ARGUMENTS: Final = frozenset({"sfFunctionClass", "sfFunctionLazy", "sfFunctionData", "phase.function"})


def format_java(value: object) -> str:
    """The text Java's ``toString`` gives for a value (what ``++`` concatenates)."""
    if type(value) is str:
        return value
    if type(value) is int:
        return str(value)  # (a Long would print as Long(…), hence int() below)
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return java_float_text(value, single=not isinstance(value, Double))
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(format_java(v) for v in value) + "]"
    from sd_actors.descriptions._printer import format_value

    if isinstance(value, ComponentDescription | Apply | Reference):
        return format_value(value)
    return str(value)


def java_float_text(value: float, *, single: bool) -> str:
    """Java's ``Float.toString``/``Double.toString``: ``1.0``, ``3.25``, ``1.0E10``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    digits = _shortest(value, single)
    magnitude = abs(value)
    if magnitude == 0 or 1e-3 <= magnitude < 1e7:
        text = format(float(digits), "f") if "e" in digits.lower() else digits
        if "." not in text:
            text += ".0"
        return _trim(text)
    exponent = int(f"{float(digits):e}".split("e")[1])
    return f"{_trim(_mantissa(digits))}E{exponent}"


def _shortest(value: float, single: bool) -> str:
    if not single:
        return repr(float(value))
    for precision in range(1, 10):
        text = f"{value:.{precision}g}"
        if to_float32(float(text)) == to_float32(value):
            return text
    return repr(value)


def _mantissa(digits: str) -> str:
    # Normalise the shortest digits to d.ddd form.
    sign = "-" if digits.startswith("-") else ""
    body = digits.lstrip("-").lower()
    if "e" in body:
        body, _ = body.split("e")
    whole, _, fraction = body.partition(".")
    all_digits = (whole + fraction).lstrip("0") or "0"
    all_digits = all_digits.rstrip("0") or "0"
    return sign + all_digits[0] + "." + (all_digits[1:] or "0")


def _trim(text: str) -> str:
    if "." in text:
        whole, fraction = text.split(".")
        fraction = fraction.rstrip("0") or "0"
        return f"{whole}.{fraction}"
    return text
