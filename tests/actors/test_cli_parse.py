"""``sd-actors parse``, run as the installed console script: output, options and error reports."""

from __future__ import annotations

import importlib.resources
import json
import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any, Final

import pytest

from sd_actors.descriptions import ComponentDescription, parse_file, parse_string

SD_ACTORS: Final = Path(sys.executable).parent / "sd-actors"
EXAMPLES: Final = Path(str(importlib.resources.files("sd_actors.descriptions") / "examples"))
POOL: Final = EXAMPLES / "pool.sf"
PHASES: Final = ["type", "place", "function", "sfConfig", "link"]
KINDS: Final = {"component", "string", "integer", "long", "float", "double", "boolean", "null", "tbd", "bytes",
                "vector", "reference", "apply", "assert"}


def sd_actors(*arguments: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SD_ACTORS), *map(str, arguments)], capture_output=True, text=True, timeout=120,
                          cwd=cwd, check=False)


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def attribute(config: ComponentDescription, path: str) -> object:
    """The value at ``path`` (names separated by ':') below ``config``."""
    value: object = config
    for name in path.split(":"):
        assert isinstance(value, ComponentDescription), f"{name!r} is looked up in a {type(value).__name__}"
        value = value[name]
    return value


def kinds_in(value: Any) -> list[str]:
    """The ``kind`` of every value in a ``--json`` document, failing on a value without one."""
    assert isinstance(value, dict), f"a value that is not an object: {value!r}"
    assert "kind" in value, f"a value without a kind: {value!r}"
    found = [value["kind"]]
    if value["kind"] == "component":
        for attribute in value["attributes"]:
            assert set(attribute) == {"name", "tags", "value"}
            found += kinds_in(attribute["value"])
    elif value["kind"] == "vector":
        for item in value["items"]:
            found += kinds_in(item)
    elif value["kind"] in ("apply", "assert"):
        found += kinds_in(value["body"])
    return found


def phase_sections(output: str) -> dict[str, str]:
    """``--phases`` output split into the tree printed after each phase, by phase name."""
    parts = re.split(r"^// ---- after phase (\S+) ----$", output, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def select(document: Any, path: str) -> list[Any]:
    """A small jq: ``.name`` and ``[]`` steps, enough for the example in ``parse --help``."""
    results = [document]
    for step in re.findall(r"\.\w+|\[\]", path):
        if step == "[]":
            results = [item for result in results for item in result]
        else:
            results = [result[step[1:]] for result in results if isinstance(result, dict) and step[1:] in result]
    return results


def test_the_console_script_is_installed_next_to_the_interpreter() -> None:
    assert SD_ACTORS.is_file()


# ------------------------------------------------------------------------------------------- output
def test_parse_prints_the_resolved_sfconfig_of_the_example_pool() -> None:
    result = sd_actors("parse", POOL)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sfConfig extends {\n")
    assert result.stderr == ""


def test_the_printed_sfconfig_parses_back_to_the_same_tree() -> None:
    result = sd_actors("parse", POOL)

    assert parse_string(result.stdout) == parse_file(POOL)


def test_json_output_is_json_with_the_kind_of_every_value_explicit() -> None:
    result = sd_actors("parse", POOL, "--json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) == {"sfConfig"}
    kinds = kinds_in(document["sfConfig"])
    assert set(kinds) <= KINDS
    assert {"component", "string", "boolean", "integer", "reference"} <= set(kinds)


def test_json_output_keeps_every_kind_apart(tmp_path: Path) -> None:
    source = write(tmp_path, "kinds.sf", (
        "sfConfig extends {\n  i 1;\n  l 1L;\n  f 1.5f;\n  d 1.5D;\n  b true;\n  s \"1\";\n  n NULL;\n"
        "  v [| 1, \"a\" |];\n  x #HEX#0aff#;\n  r LAZY ROOT:i;\n  c extends DATA {}\n}\n"))

    result = sd_actors("parse", source, "--json")

    attributes = json.loads(result.stdout)["sfConfig"]["attributes"]
    values = {attribute["name"]: attribute["value"] for attribute in attributes}
    assert values["i"] == {"kind": "integer", "value": 1}
    assert values["l"] == {"kind": "long", "value": 1}
    assert values["f"] == {"kind": "float", "value": 1.5}
    assert values["d"] == {"kind": "double", "value": 1.5}
    assert values["b"] == {"kind": "boolean", "value": True}
    assert values["s"] == {"kind": "string", "value": "1"}
    assert values["n"] == {"kind": "null"}
    assert values["v"] == {"kind": "vector", "items": [{"kind": "integer", "value": 1},
                                                       {"kind": "string", "value": "a"}]}
    assert values["x"] == {"kind": "bytes", "hex": "0aff"}
    assert values["r"]["kind"] == "reference"
    assert values["r"]["lazy"] is True
    assert values["r"]["path"] == "ROOT:i"
    assert values["c"] == {"kind": "component", "eager": False, "attributes": []}


def test_phases_prints_one_section_per_phase_in_the_reference_order() -> None:
    result = sd_actors("parse", POOL, "--phases")

    assert result.returncode == 0, result.stderr
    assert list(phase_sections(result.stdout)) == PHASES


def test_phases_shows_each_phase_at_work(tmp_path: Path) -> None:
    source = write(tmp_path, "phases.sf",
                   "P extends {\n  a 1;\n}\nsfConfig extends P {\n  b (a + 1);\n  c b;\n}\n")

    result = sd_actors("parse", source, "--phases")

    sections = phase_sections(result.stdout)
    assert "APPLY" not in sections["type"]  # operators are still function components
    assert "APPLY" in sections["function"]
    assert "P extends" not in sections["sfConfig"]  # only sfConfig is left
    assert "c 2;" in sections["link"]


# ------------------------------------------------------------------------------------------ options
def test_dash_d_sets_a_property(tmp_path: Path) -> None:
    source = write(tmp_path, "site.sf", "sfConfig extends {\n  site PROPERTY site;\n  port IPROPERTY port;\n}\n")

    result = sd_actors("parse", source, "-D", "site=cern", "-D", "port=8080")

    assert result.returncode == 0, result.stderr
    config = parse_string(result.stdout)
    assert config["site"] == "cern"
    assert config["port"] == 8080


def test_set_overrides_an_attribute_inside_a_component() -> None:
    result = sd_actors("parse", POOL, "--set", "computer1:domain1:memory=42")

    assert result.returncode == 0, result.stderr
    assert attribute(parse_string(result.stdout), "computer1:domain1:memory") == 42


def test_set_of_a_tbd_attribute_fixes_the_tbd_error(tmp_path: Path) -> None:
    source = write(tmp_path, "vm.sf", "sfConfig extends {\n  a extends {\n    b TBD;\n  }\n}\n")
    assert sd_actors("parse", source).returncode == 2

    result = sd_actors("parse", source, "--set", "a:b=42")

    assert result.returncode == 0, result.stderr
    assert attribute(parse_string(result.stdout), "a:b") == 42


def test_set_takes_a_value_that_is_not_a_literal_as_text(tmp_path: Path) -> None:
    source = write(tmp_path, "vm.sf", "sfConfig extends {\n  disk TBD;\n  name TBD;\n}\n")

    result = sd_actors("parse", source, "--set", "disk=10G", "--set", 'name="web1"')

    config = parse_string(result.stdout)
    assert config["disk"] == "10G"
    assert config["name"] == "web1"


def test_dash_i_adds_a_folder_to_look_for_includes_in(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    library.mkdir()
    write(library, "parts.sf", "Part extends {\n  size 3;\n}\n")
    source = write(tmp_path, "web.sf", '#include "parts.sf"\nsfConfig extends Part;\n')

    result = sd_actors("parse", source, "-I", library)

    assert result.returncode == 0, result.stderr
    assert parse_string(result.stdout)["size"] == 3


def test_set_reaches_an_attribute_whose_name_has_a_dot(tmp_path: Path) -> None:
    source = write(tmp_path, "vm.sf", "sfConfig extends {\n  vm extends {\n    test.timeout 1;\n  }\n}\n")

    result = sd_actors("parse", source, "--set", "vm:test.timeout=5")

    assert result.returncode == 0, result.stderr
    assert attribute(parse_string(result.stdout), "vm:test.timeout") == 5


# ------------------------------------------------------------------------------------------- errors
def test_a_broken_description_exits_2_with_a_compiler_style_report(tmp_path: Path) -> None:
    source = write(tmp_path, "broken.sf", "sfConfig extends {\n  port 80;\n  x (10 -5);\n}\n")

    result = sd_actors("parse", source)

    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{source}:3:9: ")
    assert lines[1] == "      x (10 -5);"
    assert lines[2] == "    " + " " * 8 + "^"
    assert lines[3].startswith("hint: ")
    assert "Traceback" not in result.stderr


def test_an_error_found_while_resolving_is_reported_the_same_way(tmp_path: Path) -> None:
    write(tmp_path, "broken.sf", "sfConfig extends {\n  port 80;\n  x prot;\n}\n")

    result = sd_actors("parse", "broken.sf", cwd=tmp_path)

    assert result.returncode == 2
    first, *rest = result.stderr.splitlines()
    assert first.startswith("broken.sf:3:3: ")
    assert "'prot'" in first
    assert rest == ["      x prot;", "      ^", "hint: did you mean 'port'?"]


def test_a_tbd_left_in_sfconfig_exits_2_and_says_which_set_fixes_it(tmp_path: Path) -> None:
    source = write(tmp_path, "vm.sf", "sfConfig extends {\n  a extends {\n    b TBD;\n  }\n}\n")

    result = sd_actors("parse", source)

    assert result.returncode == 2
    assert result.stderr.startswith(f"{source}:3:5: ")
    assert "--set a:b=VALUE" in result.stderr


def test_a_missing_file_exits_2_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "nothere.sf"

    result = sd_actors("parse", missing)

    assert result.returncode == 2
    assert f"{missing}: no such description file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_set_path_that_names_no_component_exits_2(tmp_path: Path) -> None:
    source = write(tmp_path, "vm.sf", "sfConfig extends {\n  a 1;\n}\n")

    result = sd_actors("parse", source, "--set", "nothere:x=1")

    assert result.returncode == 2
    assert "nothere" in result.stderr
    assert "hint:" in result.stderr


def test_a_dash_d_without_a_value_is_a_usage_error(tmp_path: Path) -> None:
    source = write(tmp_path, "vm.sf", "sfConfig extends {}\n")

    result = sd_actors("parse", source, "-D", "site")

    assert result.returncode == 2
    assert "expected NAME=VALUE, got 'site'" in result.stderr


# ---------------------------------------------------------------------------------- version and help
def test_version_prints_the_installed_version() -> None:
    result = sd_actors("--version")

    assert result.returncode == 0
    assert result.stdout.strip() == f"sd-actors {version('sd-actors')}"


@pytest.mark.parametrize("arguments", [("--help",), ("parse", "--help")], ids=["sd-actors", "parse"])
def test_help_shows_examples(arguments: tuple[str, ...]) -> None:
    result = sd_actors(*arguments)

    assert result.returncode == 0
    assert "examples:" in result.stdout
    assert re.search(r"^  sd-actors parse \S+\.sf", result.stdout, flags=re.MULTILINE)


def test_parse_help_names_every_option() -> None:
    result = sd_actors("parse", "--help")

    for option in ("-I DIR", "-D NAME=VALUE", "--set PATH=VALUE", "--json", "--phases"):
        assert option in result.stdout


def test_the_jq_example_in_parse_help_selects_the_attribute_names() -> None:
    example = re.search(r"--json \| jq '([^']*)'", sd_actors("parse", "--help").stdout)
    assert example is not None
    document = json.loads(sd_actors("parse", POOL, "--json").stdout)

    names = select(document, example.group(1))

    assert names == ["sfClass", "sfSyncTerminate", "computer1", "computer2"]
