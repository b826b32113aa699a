"""Every mistake in a description is reported as the right DescriptionError, at the right place,
with a hint that says how to fix it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from sd_actors.descriptions import (
    AssertionFailed,
    ComponentDescription,
    CyclicReference,
    DescriptionError,
    DescriptionSyntaxError,
    FinalAttributeOverridden,
    FunctionError,
    IncludeNotFound,
    NestingTooDeep,
    PlacementError,
    PropertyMissing,
    SchemaViolation,
    SfConfigError,
    SourceLocation,
    TypeResolutionError,
    UnresolvedReference,
    UnresolvedTBD,
    parse_file,
    parse_string,
)

COMPONENTS = '#include "org/smartfrog/components.sf"\n'


def attribute(config: ComponentDescription, path: str) -> object:
    """The value at ``path`` (names separated by ':') below ``config``."""
    value: object = config
    for name in path.split(":"):
        assert isinstance(value, ComponentDescription), f"{name!r} is looked up in a {type(value).__name__}"
        value = value[name]
    return value


@dataclass(frozen=True)
class Broken:
    """A broken description and what its error must say: class, 1-based line and column, hint."""

    text: str
    error: type[DescriptionError]
    line: int
    column: int
    hint: str  # the hint must contain this


BROKEN: dict[str, Broken] = {
    # -- lexical ---------------------------------------------------------------------------------
    "unclosed string": Broken(
        'sfConfig extends {\n  x "abc;\n}\n',
        DescriptionSyntaxError, 2, 5, 'close it with " (use ## ... # for text over several lines)'),
    "unclosed multi-line string": Broken(
        "sfConfig extends {\n  x ## abc\n  def;\n}\n",
        DescriptionSyntaxError, 2, 5, "close it with # (write \\# for a # inside it)"),
    "unclosed comment": Broken(
        "sfConfig extends {\n  /* x 1;\n}\n",
        DescriptionSyntaxError, 2, 3, "end the comment with */"),
    "unknown escape in a string": Broken(
        'sfConfig extends {\n  x "a\\qb";\n}\n',
        DescriptionSyntaxError, 2, 7, "write \\\\ for a backslash"),
    "integer too big for an Integer": Broken(
        "sfConfig extends {\n  x 99999999999;\n}\n",
        DescriptionSyntaxError, 2, 5, "write 99999999999L for a Long"),
    "malformed byte array": Broken(
        "sfConfig extends {\n  x #HEX#0G#;\n}\n",
        DescriptionSyntaxError, 2, 5, "HEX takes pairs of hex digits"),
    "unexpected character": Broken(
        "sfConfig extends {\n  x ?;\n}\n",
        DescriptionSyntaxError, 2, 5, "names start with a letter"),
    # -- syntax ----------------------------------------------------------------------------------
    "negative number without a space after an operand": Broken(
        "sfConfig extends {\n  x (10 -5);\n}\n",
        DescriptionSyntaxError, 2, 9, "write '- 5' with a space: '-5' reads as one negative number"),
    "n-ary operator mixed with another": Broken(
        "sfConfig extends {\n  x (1 + 2 * 3);\n}\n",
        DescriptionSyntaxError, 2, 12, "operators have no precedence: nest them, e.g. (a + (b * c))"),
    "binary operator followed by another": Broken(
        "sfConfig extends {\n  x (1 - 2 + 3);\n}\n",
        DescriptionSyntaxError, 2, 12, "operators have no precedence: nest them"),
    "unclosed component": Broken(
        "sfConfig extends {\n  a 1;\n",
        DescriptionSyntaxError, 3, 1, "every '{' needs a matching '}'"),
    "brace that closes nothing": Broken(
        "sfConfig extends {\n  a 1;\n}\n}\n",
        DescriptionSyntaxError, 4, 1, "this '}' closes nothing"),
    "extends with nothing after it": Broken(
        "sfConfig extends {\n  a extends ;\n}\n",
        DescriptionSyntaxError, 2, 13, "write 'extends {}' for an empty component"),
    "IF without ELSE": Broken(
        "sfConfig extends {\n  a IF true THEN 1 FI;\n}\n",
        DescriptionSyntaxError, 2, 20, "IF c THEN a ELSE b FI needs its ELSE"),
    "reference inside a literal vector": Broken(
        "sfConfig extends {\n  a [| 1, x |];\n}\n",
        DescriptionSyntaxError, 2, 11, "literal vectors [| |] hold only literal values; use [ ] for references"),
    "VAR constraint variable": Broken(
        "sfConfig extends {\n  a VAR;\n}\n",
        DescriptionSyntaxError, 2, 5, "give the attribute a value"),
    "components nested too deep": Broken(
        "sfConfig extends " + "{\n a extends " * 150 + "{}" + "}" * 150 + "\n",
        NestingTooDeep, 101, 4, "flatten the description"),
    # -- includes --------------------------------------------------------------------------------
    "missing include": Broken(
        '#include "nothere.sf"\nsfConfig extends {}\n',
        IncludeNotFound, 1, 10, "add its folder with -I DIR, or use #include? for an optional file"),
    # -- type resolution -------------------------------------------------------------------------
    "unknown prototype with a close name": Broken(
        COMPONENTS + "\nsfConfig extends Compoud {\n}\n",
        TypeResolutionError, 3, 18, "did you mean 'Compound'?"),
    "unknown local prototype with a close name": Broken(
        "Template extends {\n  a 1;\n}\nsfConfig extends {\n  x extends Templat;\n}\n",
        TypeResolutionError, 5, 13, "did you mean 'Template'?"),
    "prototype that is not a component": Broken(
        "P 1;\nsfConfig extends P;\n",
        TypeResolutionError, 2, 18, "must denote a component description"),
    "prototype that is a LAZY reference": Broken(
        "P extends {}\nQ LAZY P;\nsfConfig extends Q;\n",
        TypeResolutionError, 3, 18, "extends needs a component description"),
    "sfOverride of an attribute no prototype defines": Broken(
        "P extends {\n  port 80;\n}\nsfConfig extends P {\n  [sfOverride] prot 81;\n}\n",
        TypeResolutionError, 5, 16, "did you mean 'port'?"),
    "cyclic extends": Broken(
        "A extends B;\nB extends A;\nsfConfig extends A;\n",
        CyclicReference, 1, 3, "a component cannot extend a prototype that contains or extends it"),
    "prototype that extends its own container": Broken(
        "A extends {\n  b extends A;\n}\nsfConfig extends A;\n",
        CyclicReference, 2, 13, "a component cannot extend a prototype that contains it"),
    "sfFinal attribute overridden by extends": Broken(
        "P extends {\n  [sfFinal] port 80;\n}\nsfConfig extends P {\n  port 81;\n}\n",
        FinalAttributeOverridden, 5, 3, "remove the override of 'port', or the sfFinal tag in the prototype"),
    "sfFinal attribute overridden by placement": Broken(
        "sfConfig extends {\n  a extends {\n    [sfFinal] port 80;\n  }\n  a:port 81;\n}\n",
        FinalAttributeOverridden, 5, 3, "remove the placement or the sfFinal tag"),
    # -- placement -------------------------------------------------------------------------------
    "placement into a non-component": Broken(
        "sfConfig extends {\n  c 3;\n  c:d 4;\n}\n",
        PlacementError, 3, 3, "attributes can only be placed into component descriptions"),
    "placement into a component that does not exist": Broken(
        "sfConfig extends {\n  nothere:x 1;\n}\n",
        PlacementError, 2, 3, "the part before the last ':' must name an existing component description"),
    # -- sfConfig --------------------------------------------------------------------------------
    "sfConfig missing": Broken(
        "web extends {\n  port 80;\n}\n",
        SfConfigError, 1, 1, "add 'sfConfig extends Compound { … }'"),
    "sfConfig that is not a component": Broken(
        "web extends {}\nsfConfig 42;\n",
        SfConfigError, 2, 1, "write 'sfConfig extends { … }'"),
    # -- links -----------------------------------------------------------------------------------
    "unknown reference with a close name": Broken(
        "sfConfig extends {\n  port 80;\n  x prot;\n}\n",
        UnresolvedReference, 3, 3, "did you mean 'port'?"),
    "PARENT of the outermost component": Broken(
        "sfConfig extends {\n  a PARENT:PARENT;\n}\n",
        UnresolvedReference, 2, 3, "remove PARENT or use ROOT"),
    "sfLocal attribute referenced from outside": Broken(
        "sfConfig extends {\n  a extends {\n    [sfLocal] s 1;\n  }\n  b a:s;\n}\n",
        UnresolvedReference, 5, 3, "an sfLocal attribute is only visible from inside its own component"),
    "HOST reference that is not LAZY": Broken(
        "sfConfig extends {\n  a HOST h:x;\n}\n",
        UnresolvedReference, 2, 3, "write LAZY HOST h:x"),
    "PROPERTY that is not set": Broken(
        "sfConfig extends {\n  site PROPERTY site;\n}\n",
        PropertyMissing, 2, 3, "pass -D site=VALUE"),
    "cyclic links": Broken(
        "sfConfig extends {\n  a b;\n  b a;\n}\n",
        CyclicReference, 2, 3, "break the circle of links"),
    "component that contains itself through a link": Broken(
        "sfConfig extends {\n  c extends {\n    d c;\n  }\n}\n",
        CyclicReference, 3, 5, "use LAZY to refer to the running component"),
    "link to THIS": Broken(
        "sfConfig extends {\n  c THIS;\n}\n",
        CyclicReference, 2, 3, "use LAZY to refer to the running component"),
    "TBD left in sfConfig": Broken(
        "sfConfig extends {\n  vm extends {\n    memory TBD;\n  }\n}\n",
        UnresolvedTBD, 3, 5, "--set vm:memory=VALUE"),
    "TBD inherited from a prototype": Broken(
        "VM extends {\n  memory TBD;\n}\nsfConfig extends {\n  web extends VM;\n}\n",
        UnresolvedTBD, 2, 3, "--set web:memory=VALUE"),
    # -- functions, schemas, assertions ----------------------------------------------------------
    "operator on the wrong kind": Broken(
        'sfConfig extends {\n  a ("x" - 1);\n}\n',
        FunctionError, 2, 10, "every one must be an Integer, Long, Float or Double"),
    "integer division by zero": Broken(
        "sfConfig extends {\n  a (1 / 0);\n}\n",
        FunctionError, 2, 8, "the divisor of an integer division must not be 0"),
    "unknown function with a close name": Broken(
        'sfConfig extends {\n  a APPLY { sfFunctionClass "Summ"; };\n}\n',
        FunctionError, 2, 5, "did you mean 'Sum'?"),
    "schema: attribute of the wrong type": Broken(
        COMPONENTS + 'sfConfig extends {\n  port "80";\n  schema extends Schema {\n    port extends Integer;\n  }\n}\n',
        SchemaViolation, 4, 3, "give the attribute a value of the kind the schema asks for"),
    "schema: required attribute missing": Broken(
        COMPONENTS + "sfConfig extends {\n  schema extends Schema {\n    port extends Integer;\n  }\n}\n",
        SchemaViolation, 3, 3, "give the attribute a value of the kind the schema asks for"),
    "failed assertion": Broken(
        COMPONENTS + "sfConfig extends {\n  a 1;\n  check extends Assertions {\n    big (a > 2);\n  }\n}\n",
        AssertionFailed, 4, 3, "change the values so that every assertion holds"),
}


# Cases whose hint is written in the parser but not given: bugs to fix, kept in the table.
KNOWN_BUGS: dict[str, str] = {}
CASES = [
    pytest.param(case, id=name, marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name])]
                 if name in KNOWN_BUGS else [])
    for name, case in BROKEN.items()
]


@pytest.mark.parametrize("case", CASES)
def test_a_broken_description_is_reported_with_its_cause_place_and_fix(case: Broken, tmp_path: Path) -> None:
    source = tmp_path / "broken.sf"
    source.write_text(case.text, encoding="utf-8")

    with pytest.raises(DescriptionError) as excinfo:
        parse_file(source)

    error = excinfo.value
    assert type(error) is case.error, error.render()
    assert error.location == SourceLocation(source, line=case.line, column=case.column), error.render()
    assert error.hint is not None
    assert case.hint in error.hint
    assert error.message


@pytest.mark.parametrize("case", CASES)
def test_a_broken_description_is_rendered_compiler_style_with_the_line_and_a_caret(
    case: Broken, tmp_path: Path
) -> None:
    source = tmp_path / "broken.sf"
    source.write_text(case.text, encoding="utf-8")

    with pytest.raises(DescriptionError) as excinfo:
        parse_file(source)

    lines = excinfo.value.render().splitlines()
    assert lines[0] == f"{source}:{case.line}:{case.column}: {excinfo.value.message}"
    assert lines[1] == "    " + case.text.split("\n")[case.line - 1].expandtabs(1)
    assert lines[2] == "    " + " " * (case.column - 1) + "^"
    assert lines[-1] == f"hint: {excinfo.value.hint}"


def test_the_caret_points_at_the_column_when_the_line_has_tabs(tmp_path: Path) -> None:
    source = tmp_path / "tabs.sf"
    source.write_text('sfConfig extends {\n\ta\t"x;\n}\n', encoding="utf-8")

    with pytest.raises(DescriptionSyntaxError) as excinfo:
        parse_file(source)

    assert excinfo.value.location == SourceLocation(source, line=2, column=4)
    _, shown, caret, *_ = excinfo.value.render().splitlines()
    assert shown[caret.index("^")] == '"'


def test_a_missing_include_lists_every_folder_that_was_searched(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    source = tmp_path / "web.sf"
    source.write_text('#include "nothere.sf"\nsfConfig extends {}\n', encoding="utf-8")

    with pytest.raises(IncludeNotFound) as excinfo:
        parse_file(source, include_dirs=[library])

    assert excinfo.value.location == SourceLocation(source, line=1, column=10)
    assert excinfo.value.hint is not None
    assert str(tmp_path) in excinfo.value.hint
    assert str(library) in excinfo.value.hint
    assert "the sd-actors component library" in excinfo.value.hint


def test_an_optional_include_that_is_missing_is_no_error(tmp_path: Path) -> None:
    source = tmp_path / "web.sf"
    source.write_text('#include? "nothere.sf"\nsfConfig extends {\n  a 1;\n}\n', encoding="utf-8")

    config = parse_file(source)

    assert config["a"] == 1


def test_an_error_in_an_included_file_points_into_that_file(tmp_path: Path) -> None:
    included = tmp_path / "parts.sf"
    included.write_text("Part extends {\n  size (1 +);\n}\n", encoding="utf-8")
    source = tmp_path / "web.sf"
    source.write_text('#include "parts.sf"\nsfConfig extends Part;\n', encoding="utf-8")

    with pytest.raises(DescriptionSyntaxError) as excinfo:
        parse_file(source)

    assert excinfo.value.location == SourceLocation(included, line=2, column=12)
    assert excinfo.value.source_line == "  size (1 +);"


def test_an_include_that_includes_itself_is_reported_not_followed_forever(tmp_path: Path) -> None:
    source = tmp_path / "loop.sf"
    source.write_text('#include "loop.sf"\nsfConfig extends {}\n', encoding="utf-8")

    with pytest.raises(DescriptionSyntaxError) as excinfo:
        parse_file(source)

    assert excinfo.value.location == SourceLocation(source, line=1, column=10)
    assert excinfo.value.hint == "remove the #include that closes the circle"


def test_a_missing_description_file_is_a_description_error_that_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.sf"

    with pytest.raises(DescriptionError) as excinfo:
        parse_file(missing)

    assert str(missing) in excinfo.value.message


def test_following_the_tbd_hint_fixes_the_description() -> None:
    text = "sfConfig extends {\n  web extends {\n    vm extends {\n      memory TBD;\n    }\n  }\n}\n"
    with pytest.raises(UnresolvedTBD) as excinfo:
        parse_string(text)
    assert excinfo.value.hint is not None
    path = re.search(r"--set (\S+)=VALUE", excinfo.value.hint)
    assert path is not None, excinfo.value.hint

    config = parse_string(text, overrides={path.group(1): "1024"})

    assert path.group(1) == "web:vm:memory"
    assert attribute(config, "web:vm:memory") == 1024


def test_following_the_tbd_hint_fixes_an_attribute_whose_name_has_a_dot() -> None:
    text = "sfConfig extends {\n  web extends {\n    test.timeout TBD;\n  }\n}\n"
    with pytest.raises(UnresolvedTBD) as excinfo:
        parse_string(text)
    assert excinfo.value.hint is not None
    path = re.search(r"--set (\S+)=VALUE", excinfo.value.hint)
    assert path is not None, excinfo.value.hint

    config = parse_string(text, overrides={path.group(1): "5"})

    assert attribute(config, "web:test.timeout") == 5


def test_a_tbd_outside_sfconfig_is_no_error() -> None:
    config = parse_string("Template extends {\n  memory TBD;\n}\nsfConfig extends {\n  a 1;\n}\n")

    assert config["a"] == 1


def test_every_cyclic_link_is_named_in_one_report() -> None:
    with pytest.raises(CyclicReference) as excinfo:
        parse_string("sfConfig extends {\n  a b;\n  b a;\n}\n")

    assert "sfConfig:a" in excinfo.value.message
    assert "sfConfig:b" in excinfo.value.message


def test_the_schema_violation_names_the_attribute_and_both_kinds() -> None:
    text = COMPONENTS + (
        'sfConfig extends {\n  port "80";\n  schema extends Schema {\n    port extends Integer;\n  }\n}\n'
    )

    with pytest.raises(SchemaViolation) as excinfo:
        parse_string(text)

    assert "'port' must be Integer, found String" in excinfo.value.message


def test_the_failed_assertion_is_named() -> None:
    text = COMPONENTS + "sfConfig extends {\n  a 1;\n  check extends Assertions {\n    big (a > 2);\n  }\n}\n"

    with pytest.raises(AssertionFailed) as excinfo:
        parse_string(text)

    assert "big: evaluates to false" in excinfo.value.message


def test_an_error_found_while_resolving_a_string_shows_the_source_line() -> None:
    text = "sfConfig extends {\n  port 80;\n  x prot;\n}\n"

    with pytest.raises(UnresolvedReference) as excinfo:
        parse_string(text, filename="web.sf")

    assert excinfo.value.source_line == "  x prot;"
    assert excinfo.value.render().splitlines()[2] == "      ^"


def test_an_operator_outside_parentheses_gets_the_hint_to_add_them() -> None:
    with pytest.raises(DescriptionSyntaxError) as excinfo:
        parse_string("sfConfig extends {\n  a 1 + 2;\n}\n")

    assert excinfo.value.location == SourceLocation("<string>", line=2, column=7)
    assert excinfo.value.hint == "operators are only allowed inside parentheses: write (a + b)"


def test_a_placement_into_a_non_component_names_the_target_as_written() -> None:
    with pytest.raises(PlacementError) as excinfo:
        parse_string("sfConfig extends {\n  c 3;\n  c:d 4;\n}\n")

    assert "HERE" not in excinfo.value.message
    assert "an Integer" in excinfo.value.message
