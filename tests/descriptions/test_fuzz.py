"""Whatever text it is given, the parser answers with a description or a DescriptionError.

Random bytes, token soup from the language's own vocabulary, damaged copies of the example
descriptions, and pathological shapes (deep nesting, long chains, huge flat descriptions) must
never raise anything else, exhaust the stack or hang; and every DescriptionError must say what
went wrong and point inside the text it was given.
"""

from __future__ import annotations

import importlib.resources
import tempfile
import threading
from pathlib import Path
from typing import Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sd_actors.descriptions import (
    ComponentDescription,
    CyclicReference,
    DescriptionError,
    NestingTooDeep,
    parse_file,
    parse_string,
)

EXAMPLES: Final = Path(str(importlib.resources.files("sd_actors.descriptions") / "examples"))
EXAMPLE_TEXTS: Final = {path.name: path.read_text(encoding="utf-8") for path in sorted(EXAMPLES.glob("*.sf"))}
FILENAME: Final = "fuzz.sf"

# A parse that takes longer than this is taken for a hang. Generous: CI machines are slow and
# the biggest inputs below (100,000 attributes) take about a second on a laptop.
PROMPTLY: Final = 30.0

FUZZ: Final = settings(
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

KEYWORDS: Final = (
    "extends", "true", "false", "LAZY", "DATA", "NULL", "TBD", "ROOT", "PARENT", "THIS", "HERE", "ATTRIB",
    "PROPERTY", "IPROPERTY", "ENVPROPERTY", "IENVPROPERTY", "CONSTANT", "HOST", "PROCESS", "OPTIONAL", "APPLY",
    "ASSERT", "IF", "THEN", "ELSE", "FI", "SWITCH", "ENDSWITCH", "VAR",
)
PUNCTUATION: Final = (";", ",", "{", "}", "[", "]", ":", "[|", "|]", "--", "(", ")")
OPERATORS: Final = ("+", "-", "*", "/", "%", "++", "<>", "==", "!=", ">=", "<=", ">", "<", "&&", "||", "x|", "!", "->")
WORDS: Final = (
    "sfConfig", "a", "b", "c", "x", "Compound", "Prim", "Schema", "Integer", "Assertions", "sum", "concat",
    "phaseList", "sfFinal", "sfTemp", "sfLocal", "sfOverride", "sfClass", "a-b", "test.timeout", "user+name",
    "listen@port", "é", "$x", "_y",
)
LITERALS: Final = (
    '"text"', '""', '"a\\n\\t\\"b\\101"', '"unclosed', "## multi\nline #", "##", "0", "42", "-5", "2147483648",
    "240L", "1.5f", "2.5D", ".5", "2e3", "1e999D", "#HEX#0aFF#", "#B64#AAEC#", "#DEC#255001#", "#OCT#7#",
    "#BIN#00000001#", '"type"', '"link"',
)
DIRECTIVES: Final = (
    '#include "org/smartfrog/components.sf"', '#include? "absent.sf"', '#include "absent.sf"', "#include",
    '#codebase "x"', "#", "//", "/*", "*/", "\n",
)
VOCABULARY: Final = KEYWORDS + PUNCTUATION + OPERATORS + WORDS + LITERALS + DIRECTIVES


def parse_promptly(text: str) -> ComponentDescription:
    """``parse_string(text)``, failing the test if it does not return or raise within PROMPTLY seconds.

    The parse runs in a daemon thread, so a parser that hangs fails this test instead of hanging
    the whole run (a thread pool would wait for it at exit).
    """
    outcome: list[ComponentDescription | BaseException] = []

    def run() -> None:
        try:
            outcome.append(parse_string(text, filename=FILENAME))
        except BaseException as error:  # noqa: BLE001 - handed over to the test's thread, re-raised there
            outcome.append(error)

    worker = threading.Thread(target=run, name="parse_promptly", daemon=True)
    worker.start()
    worker.join(timeout=PROMPTLY)
    if worker.is_alive():
        pytest.fail(f"parse_string did not return or raise within {PROMPTLY} s (input of {len(text)} characters)")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def assert_parses_or_reports(text: str) -> None:
    """The contract under test: a ComponentDescription, or a DescriptionError that points into ``text``."""
    try:
        result = parse_promptly(text)
    except DescriptionError as error:
        assert_well_formed(error, text)
    else:
        assert isinstance(result, ComponentDescription)


def assert_well_formed(error: DescriptionError, text: str) -> None:
    assert error.message.strip(), f"{type(error).__name__} without a message"
    assert error.render().strip()
    if error.location is None:
        return
    if str(error.location.path) == FILENAME:
        source = text
    elif isinstance(error.location.path, Path) and error.location.path.is_file():
        source = error.location.path.read_text(encoding="utf-8")  # an included file
    else:
        return  # e.g. a --set override: no text to point into
    lines = source.split("\n")
    assert 1 <= error.location.line <= len(lines), f"{error.location} is past the end of the text"
    assert 1 <= error.location.column <= len(lines[error.location.line - 1]) + 1, (
        f"{error.location} is past the end of line {error.location.line}"
    )


def mutated(text: str, data: st.DataObject) -> str:
    """``text`` with a few random spans deleted, duplicated or swapped."""
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        if not text:
            break
        start = data.draw(st.integers(0, len(text) - 1), label="start")
        end = data.draw(st.integers(start, min(len(text), start + 80)), label="end")
        span = text[start:end]
        operation = data.draw(st.sampled_from(["delete", "duplicate", "swap"]), label="operation")
        if operation == "delete":
            text = text[:start] + text[end:]
        elif operation == "duplicate":
            text = text[:end] + span + text[end:]
        else:
            other = data.draw(st.integers(0, len(text) - 1), label="other")
            other_end = data.draw(st.integers(other, min(len(text), other + 80)), label="other_end")
            if other >= end:
                text = text[:start] + text[other:other_end] + text[end:other] + span + text[other_end:]
            elif other_end <= start:
                text = text[:other] + span + text[other_end:start] + text[other:other_end] + text[end:]
    return text


# ---------------------------------------------------------------------------------------- random input
@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_decoded_as_utf8_give_a_description_or_a_description_error(raw: bytes) -> None:
    assert_parses_or_reports(raw.decode("utf-8", errors="replace"))


@settings(FUZZ, max_examples=50)
@given(st.binary(max_size=400))
def test_a_file_of_random_bytes_gives_a_description_or_a_description_error(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / FILENAME
        path.write_bytes(raw)

        try:
            result = parse_file(path)
        except DescriptionError as error:
            assert_well_formed(error, text="")  # its location names the file, which is read back
        else:
            assert isinstance(result, ComponentDescription)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_decoded_as_latin1_give_a_description_or_a_description_error(raw: bytes) -> None:
    assert_parses_or_reports(raw.decode("latin-1"))


@FUZZ
@given(st.text(max_size=400))
def test_random_unicode_text_gives_a_description_or_a_description_error(text: str) -> None:
    assert_parses_or_reports(text)


@FUZZ
@given(st.lists(st.sampled_from(VOCABULARY), max_size=60), st.sampled_from([" ", "\n", ""]))
def test_token_soup_from_the_language_vocabulary_gives_a_description_or_a_description_error(
    tokens: list[str], separator: str
) -> None:
    assert_parses_or_reports(separator.join(tokens))


@FUZZ
@given(st.lists(st.sampled_from(VOCABULARY), max_size=40))
def test_token_soup_inside_sfconfig_gives_a_description_or_a_description_error(tokens: list[str]) -> None:
    assert_parses_or_reports("sfConfig extends {\n" + " ".join(tokens) + "\n}\n")


@settings(FUZZ, max_examples=60)
@given(st.sampled_from(sorted(EXAMPLE_TEXTS)), st.data())
def test_damaged_examples_give_a_description_or_a_description_error(name: str, data: st.DataObject) -> None:
    text = mutated(EXAMPLE_TEXTS[name], data)

    assert_parses_or_reports(text)


@settings(FUZZ, max_examples=60)
@given(st.sampled_from(sorted(EXAMPLE_TEXTS)), st.lists(st.sampled_from(VOCABULARY), min_size=1, max_size=5),
       st.data())
def test_examples_with_tokens_inserted_give_a_description_or_a_description_error(
    name: str, tokens: list[str], data: st.DataObject
) -> None:
    text = EXAMPLE_TEXTS[name]
    where = data.draw(st.integers(0, len(text)), label="where")

    assert_parses_or_reports(text[:where] + " " + " ".join(tokens) + " " + text[where:])


# ---------------------------------------------------------------------------------- pathological shapes
def _nested_components(depth: int) -> str:
    return "sfConfig extends " + "{ a extends " * depth + "{}" + " }" * depth + "\n"


PATHOLOGICAL: Final = {
    "10,000 nested {": "sfConfig extends " + "{ a extends " * 10_000 + "{}" + " }" * 10_000 + "\n",
    "10,000 unclosed {": "{" * 10_000,
    "10,000 nested (": "sfConfig extends { a " + "(" * 10_000 + "1" + ")" * 10_000 + "; }\n",
    "10,000 unclosed (": "sfConfig extends { a " + "(" * 10_000,
    "10,000 nested [": "sfConfig extends { a " + "[" * 10_000 + "1" + "]" * 10_000 + "; }\n",
    "10,000 nested [|": "sfConfig extends { a " + "[|" * 10_000 + "|]" * 10_000 + "; }\n",
    "10,000 nested IF": "sfConfig extends { a " + "IF true THEN " * 10_000 + "1" + " ELSE 2 FI" * 10_000 + "; }\n",
    "10,000 nested !": "sfConfig extends { a " + "(! " * 10_000 + "true" + ")" * 10_000 + "; }\n",
    "10,000 LAZY": "sfConfig extends { a " + "LAZY " * 10_000 + "b; }\n",
    "10,000 nested APPLY": "sfConfig extends { a " + "APPLY { b " * 10_000 + "1;" + " }" * 10_000 + "; }\n",
    "5,000 chained links": "sfConfig extends {\n"
    + "".join(f"a{i} a{i + 1};\n" for i in range(5_000)) + "a5000 1;\n}\n",
    "5,000 links chained backwards": "sfConfig extends {\na0 1;\n"
    + "".join(f"a{i + 1} a{i};\n" for i in range(5_000)) + "}\n",
    "5,000 chained operators": "sfConfig extends {\n"
    + "".join(f"a{i} (a{i + 1} + 1);\n" for i in range(5_000)) + "a5000 1;\n}\n",
    "5,000 chained prototypes": "".join(f"P{i} extends P{i + 1} {{ x{i} {i}; }}\n" for i in range(5_000))
    + "P5000 extends {}\nsfConfig extends P0;\n",
    "5,000-part placement": "sfConfig extends { " + ":".join(f"a{i}" for i in range(5_000)) + " 1; }\n",
    "5,000-part reference": "sfConfig extends { x " + ":".join(["PARENT"] * 5_000) + "; }\n",
    "5,000 links in a circle": "sfConfig extends {\n"
    + "".join(f"a{i} a{(i + 1) % 5_000};\n" for i in range(5_000)) + "}\n",
    "100,000 attributes": "sfConfig extends {\n" + "".join(f"a{i} {i};\n" for i in range(100_000)) + "}\n",
    "100,000 unnamed attributes": "sfConfig extends {\n" + "-- 1;\n" * 100_000 + "}\n",
    "a 1,000,000-character string": 'sfConfig extends { a "' + "x" * 1_000_000 + '"; }\n',
    "a 1,000,000-character name": "sfConfig extends { " + "a" * 1_000_000 + " 1; }\n",
    "a 5,000-digit number": "sfConfig extends { a " + "9" * 5_000 + "; }\n",
    "a 5,000-digit Long": "sfConfig extends { a " + "9" * 5_000 + "L; }\n",
    "a 5,000-digit decimal": "sfConfig extends { a " + "9" * 5_000 + ".5D; }\n",
}
KNOWN_BUGS: Final[dict[str, str]] = {}


@pytest.mark.parametrize("text", [
    pytest.param(text, id=name, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])]
                 if name in KNOWN_BUGS else [])
    for name, text in PATHOLOGICAL.items()
])
def test_pathological_shapes_give_a_description_or_a_description_error_promptly(text: str) -> None:
    assert_parses_or_reports(text)


def test_components_nested_as_deep_as_allowed_still_resolve() -> None:
    config = parse_promptly(_nested_components(90))

    depth = 0
    node: object = config
    while isinstance(node, ComponentDescription) and "a" in node:
        node = node["a"]
        depth += 1
    assert depth == 90


def test_nesting_too_deep_is_reported_where_the_limit_is_crossed() -> None:
    text = _nested_components(10_000)

    with pytest.raises(DescriptionError) as excinfo:
        parse_promptly(text)

    assert excinfo.value.location is not None
    assert excinfo.value.location.line == 1
    assert excinfo.value.hint


@pytest.mark.xfail(strict=True, raises=NestingTooDeep,
                   reason="LIMIT: links are followed recursively; a chain longer than about 150 links is "
                   "refused with NestingTooDeep (documented in descriptions/README.md)")
def test_a_long_chain_of_links_without_a_cycle_resolves_to_the_value_at_its_end() -> None:
    text = "sfConfig extends {\n" + "".join(f"a{i} a{i + 1};\n" for i in range(1_000)) + "a1000 42;\n}\n"

    config = parse_promptly(text)

    assert config["a0"] == 42


@pytest.mark.xfail(strict=True, raises=NestingTooDeep,
                   reason="LIMIT: prototypes are resolved recursively; a chain of about 1,000 is refused with "
                   "NestingTooDeep (documented in descriptions/README.md)")
def test_a_long_chain_of_prototypes_resolves() -> None:
    text = "".join(f"P{i} extends P{i + 1} {{ x{i} {i}; }}\n" for i in range(1_000)) + \
        "P1000 extends {}\nsfConfig extends P0;\n"

    config = parse_promptly(text)

    assert config["x999"] == 999


def test_a_circle_of_links_is_reported_as_a_cycle_not_as_too_deep() -> None:
    text = "sfConfig extends {\n" + "".join(f"a{i} a{(i + 1) % 50};\n" for i in range(50)) + "}\n"

    with pytest.raises(CyclicReference) as excinfo:
        parse_promptly(text)

    assert "depends on itself" in excinfo.value.message


# ------------------------------------------------------------------- random descriptions from a grammar
# Syntactically plausible descriptions reach the resolution phases, which token soup rarely does.
_NAMES: Final = st.sampled_from(["a", "b", "c", "x", "sfConfig", "P"])
_REFERENCES: Final = st.lists(
    st.one_of(_NAMES, st.sampled_from(["ROOT", "PARENT", "THIS", "ATTRIB a", "HERE b", "PROPERTY p",
                                       'CONSTANT "java.lang.Integer.MAX_VALUE"'])),
    min_size=1, max_size=4,
).map(":".join)
_PRIMITIVES: Final = st.sampled_from(
    ["1", "-2", "3L", "1.5f", "2.5D", '"s"', "true", "false", "NULL", "TBD", "[|1, 2|]", "#HEX#00#", "DATA a"]
)


def _compound_values(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    operators = st.sampled_from(["+", "-", "*", "/", "%", "++", "<>", "==", "!=", "<", "&&", "||", "->"])
    return st.one_of(
        _REFERENCES.map(lambda r: "LAZY " + r),
        _REFERENCES.map(lambda r: "OPTIONAL(0) " + r),
        st.tuples(children, operators, children).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(children, children, children).map(lambda t: f"IF {t[0]} THEN {t[1]} ELSE {t[2]} FI"),
        st.lists(children, max_size=3).map(lambda items: "[" + ", ".join(items) + "]"),
        children.map(lambda v: f"(! {v})"),
    )


_VALUES: Final = st.recursive(_PRIMITIVES | _REFERENCES, _compound_values, max_leaves=6)
_ATTRIBUTE_NAMES: Final = st.one_of(_NAMES, _NAMES, st.lists(_NAMES, min_size=2, max_size=3).map(":".join))
_TAGS: Final = st.sampled_from(["", "", "[sfFinal] ", "[sfTemp] ", "[sfLocal] ", "[sfOverride] "])


def _components(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    attribute = st.one_of(
        st.tuples(_TAGS, _ATTRIBUTE_NAMES, _VALUES).map(lambda t: f"{t[0]}{t[1]} {t[2]};"),
        st.tuples(_TAGS, _ATTRIBUTE_NAMES, children).map(lambda t: f"{t[0]}{t[1]} {t[2]}"),
    )
    return st.tuples(
        st.sampled_from(["", "", "DATA ", "LAZY "]),
        st.lists(st.sampled_from(["P", "a", "PARENT:P", "ROOT:P"]), max_size=1),
        st.lists(attribute, max_size=5),
    ).map(lambda t: "extends " + t[0] + ", ".join([*t[1], "{ " + " ".join(t[2]) + " }"]))


_COMPONENTS: Final = st.recursive(st.just("extends {}"), _components, max_leaves=10)
_DESCRIPTIONS: Final = st.tuples(st.lists(st.tuples(st.sampled_from(["a", "b", "P"]), _COMPONENTS), max_size=3),
                                 _COMPONENTS).map(
    lambda t: "".join(f"{name} {component}\n" for name, component in t[0]) + f"sfConfig {t[1]}\n"
)


@FUZZ
@given(_DESCRIPTIONS)
def test_random_descriptions_from_the_grammar_give_a_description_or_a_description_error(text: str) -> None:
    assert_parses_or_reports(text)
