"""Placement (``a:b:c value;``) wherever a not-yet-placed attribute can travel before the place phase.

The place phase visits only the descriptions marked as holding such attributes; these cases carry
them through every way a description is made: copied by ``extends`` (through chains of templates
and into nested components), merged from an inline ``{ }`` prototype, read from an included file,
placed as part of a placed component, and into a function's description before it is evaluated.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sd_actors.descriptions import ComponentDescription, parse_file, parse_string


def _at(config: ComponentDescription, path: str) -> object:
    value: object = config
    for name in path.split(":"):
        assert isinstance(value, ComponentDescription), f"{name} of {path} is not inside a component"
        value = value[name]
    return value


CASES = [
    pytest.param(
        """
        Host extends { vm extends { memory 1; } vm:memory 2; }
        sfConfig extends { a extends Host; b extends Host { vm:cpus 4; } }
        """,
        {"a:vm:memory": 2, "b:vm:memory": 2, "b:vm:cpus": 4},
        id="in-a-template-extended-twice",
    ),
    pytest.param(
        """
        Base extends { inner extends { v 1; } inner:v 2; }
        Middle extends Base { w 3; }
        sfConfig extends { group extends { deeper extends { member extends Middle; } } }
        """,
        {"group:deeper:member:inner:v": 2, "group:deeper:member:w": 3},
        id="through-a-chain-of-templates-into-nested-components",
    ),
    pytest.param(
        """
        Base extends { y extends { v 1; } }
        sfConfig extends { x extends Base, { y:v 5; } }
        """,
        {"x:y:v": 5},
        id="from-an-inline-prototype",
    ),
    pytest.param(
        """
        sfConfig extends {
            a extends { b extends { } }
            a:b:c extends { d extends { e 1; } d:e 2; }
        }
        """,
        {"a:b:c:d:e": 2},
        id="inside-a-placed-component",
    ),
    pytest.param(
        """
        sfConfig extends {
            a extends { b extends { } }
            a:b:c extends { d:e 2; }
            a:b:c:d extends { e 1; f 3; }
        }
        """,
        {"a:b:c:d:e": 2, "a:b:c:d:f": 3},
        id="inside-a-placed-component-once-a-later-placement-made-its-target",
    ),
    pytest.param(
        """
        #include "org/smartfrog/functions.sf"
        sfConfig extends { total extends sum { a 1; b 2; } total:b 5; }
        """,
        {"total": 6},
        id="into-a-function-before-it-is-evaluated",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_a_placed_attribute_lands_wherever_its_description_was_copied(text: str, expected: dict[str, object]
                                                                      ) -> None:
    config = parse_string(text)

    assert {path: _at(config, path) for path in expected} == expected


def test_a_placement_read_from_an_included_file_lands_in_the_including_component(tmp_path: Path) -> None:
    (tmp_path / "more.sf").write_text("target:v 3;\nextra:w 4;\n")
    main = tmp_path / "main.sf"
    main.write_text('sfConfig extends {\n    target extends { v 1; }\n    extra extends { }\n'
                    '    #include "more.sf"\n}\n')

    config = parse_file(main)

    assert (_at(config, "target:v"), _at(config, "extra:w")) == (3, 4)
