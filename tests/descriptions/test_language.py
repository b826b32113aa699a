"""Language features that the conformance cases do not exercise, or that are sd-actors' own."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sd_actors.descriptions import (
    ComponentDescription,
    DescriptionSyntaxError,
    Double,
    IncludeNotFound,
    Long,
    PlacementError,
    PropertyMissing,
    Reference,
    TypeResolutionError,
    UnresolvedReference,
    UserPhaseError,
    parse_file,
    parse_string,
    to_json_value,
)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_sfoverride_accepts_an_attribute_the_prototype_defines() -> None:
    config = parse_string("Base extends { port 80; }\nsfConfig extends Base { [sfOverride] port 81; }\n")

    assert config["port"] == 81


def test_sfoverride_on_an_attribute_no_prototype_defines_is_a_type_error_with_a_suggestion() -> None:
    with pytest.raises(TypeResolutionError) as excinfo:
        parse_string("Base extends { port 80; }\nsfConfig extends Base { [sfOverride] prot 81; }\n")

    assert excinfo.value.hint == "did you mean 'port'?"
    assert excinfo.value.location is not None
    assert excinfo.value.location.line == 2


def test_a_user_phase_in_phaselist_runs_its_python_callable_on_every_component_that_names_it() -> None:
    config = parse_string(
        textwrap.dedent(
            """\
            phaseList [| "type", "place", "function", "mark", "sfConfig", "link" |];
            Marked extends { phase.mark "tests.descriptions.user_phase:add_marker"; }
            sfConfig extends { a extends Marked { n 1; } b extends { n 2; } }
            """
        )
    )

    assert config["a"]["marker"] == "seen"  # type: ignore[index]
    assert "marker" not in config["b"]  # type: ignore[operator]
    assert "phase.mark" not in config["a"]  # type: ignore[operator]


def test_a_user_phase_that_cannot_be_loaded_says_how_to_name_it() -> None:
    with pytest.raises(UserPhaseError) as excinfo:
        parse_string('phaseList [| "type", "oops", "sfConfig" |];\nsfConfig extends { phase.oops "no.such:thing"; }\n')

    assert "package.module:function" in (excinfo.value.hint or "")


def test_property_references_take_their_values_from_dash_d() -> None:
    config = parse_string('sfConfig extends { site PROPERTY site; cores IPROPERTY cores; }',
                          properties={"site": "cern", "cores": "8"})

    assert config["site"] == "cern"
    assert config["cores"] == 8


def test_a_missing_property_says_how_to_set_it() -> None:
    with pytest.raises(PropertyMissing) as excinfo:
        parse_string("sfConfig extends { site PROPERTY site; }")

    assert excinfo.value.hint == "pass -D site=VALUE"


def test_envproperty_reads_the_environment_given_to_the_parser() -> None:
    config = parse_string("sfConfig extends { home ENVPROPERTY HOME; n IENVPROPERTY N; }",
                          environment={"HOME": "/home/x", "N": "3"})

    assert (config["home"], config["n"]) == ("/home/x", 3)


def test_constant_names_a_java_constant_or_a_python_module_constant() -> None:
    config = parse_string('sfConfig extends { a CONSTANT java.lang.Integer.MAX_VALUE; b CONSTANT "os.sep"; }')

    assert (config["a"], config["b"]) == (2147483647, "/")


def test_set_overrides_replace_values_with_literals_or_text() -> None:
    config = parse_string("sfConfig extends { vm extends { memory TBD; name TBD; big TBD; } }",
                          overrides={"vm:memory": "1024", "vm:name": "web1", "vm:big": "5L"})

    vm = config["vm"]
    assert isinstance(vm, ComponentDescription)
    assert vm["memory"] == 1024
    assert vm["name"] == "web1"
    assert isinstance(vm["big"], Long)


def test_set_into_a_component_that_does_not_exist_is_refused() -> None:
    with pytest.raises(PlacementError):
        parse_string("sfConfig extends { vm extends {} }", overrides={"nothere:memory": "1"})


def test_includes_are_found_beside_the_file_then_in_dash_i_folders_then_in_the_library(tmp_path: Path) -> None:
    _write(tmp_path / "main", "local.sf", "Local extends { where \"beside\"; }\n")
    _write(tmp_path / "extra", "shared.sf", "Shared extends { where \"-I\"; }\n")
    main = _write(
        tmp_path / "main",
        "pool.sf",
        """\
        #include "local.sf"
        #include "shared.sf"
        #include "/org/smartfrog/components.sf"
        sfConfig extends Compound { a extends Local; b extends Shared; }
        """,
    )

    config = parse_file(main, include_dirs=[tmp_path / "extra"])

    assert config["a"]["where"] == "beside"  # type: ignore[index]
    assert config["b"]["where"] == "-I"  # type: ignore[index]
    assert config["sfClass"] == "sd_actors.actors.Compound"


def test_a_missing_include_lists_the_folders_it_searched(tmp_path: Path) -> None:
    main = _write(tmp_path, "pool.sf", '#include "nowhere.sf"\nsfConfig extends {}\n')

    with pytest.raises(IncludeNotFound) as excinfo:
        parse_file(main, include_dirs=[tmp_path / "lib"])

    assert str(tmp_path / "lib") in (excinfo.value.hint or "")
    assert excinfo.value.location is not None
    assert excinfo.value.location.column == 10


def test_an_include_that_includes_itself_is_reported_not_followed_forever(tmp_path: Path) -> None:
    main = _write(tmp_path, "loop.sf", '#include "loop.sf"\nsfConfig extends {}\n')

    with pytest.raises(DescriptionSyntaxError, match="include cycle"):
        parse_file(main)


def test_smartfrog_java_function_class_names_name_the_same_functions() -> None:
    config = parse_string(
        'sfConfig extends { s APPLY { sfFunctionClass "org.smartfrog.sfcore.languages.sf.functions.Sum";'
        " -- 1; -- 2; }; }"
    )

    assert config["s"] == 3


def test_java_arithmetic_promotes_kinds_and_wraps_integers() -> None:
    config = parse_string(
        "sfConfig extends { l (1 + 2L); d (1 + 2.5D); f (1 + 0.5); w (2147483647 + 1); q (-7 / 2); r (-7 % 3); }"
    )

    assert isinstance(config["l"], Long)
    assert config["l"] == 3
    assert isinstance(config["d"], Double)
    assert config["d"] == 3.5
    assert config["f"] == 1.5
    assert not isinstance(config["f"], Double)
    assert config["w"] == -2147483648
    assert (config["q"], config["r"]) == (-3, -1)


def test_an_unknown_reference_names_the_closest_attribute() -> None:
    with pytest.raises(UnresolvedReference) as excinfo:
        parse_string("sfConfig extends { memory 1; size memroy; }")

    assert excinfo.value.hint == "did you mean 'memory'?"


def test_json_output_makes_every_kind_explicit() -> None:
    config = parse_string('sfConfig extends { a 1; b 2L; c 1.5; d 2.5D; e "x"; f [|1|]; g LAZY a; h NULL; }')

    kinds = [attribute["value"]["kind"] for attribute in to_json_value(config)["attributes"]]

    assert kinds == ["integer", "long", "float", "double", "string", "vector", "reference", "null"]


def test_lazy_references_are_kept_for_run_time() -> None:
    config = parse_string("sfConfig extends { srv extends { port 80; } client extends { server LAZY srv; } }")

    server = config["client"]["server"]  # type: ignore[index]
    assert isinstance(server, Reference)
    assert server.lazy
    assert server.path_text() == "srv"
