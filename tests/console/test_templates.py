"""Templates: the TBD attributes a launch form asks for, with their schemas' kinds, checked on the server."""

from __future__ import annotations

from pathlib import Path

import pytest

from sd_actors.actors.console import TemplateError, TemplateField, default_template_folders, list_templates

GREETER = """\
#include "org/smartfrog/components.sf"
#include "org/smartfrog/sfcore/workflow/combinators/delay.sf"

sfConfig extends Compound {
    web extends Prim {
        webSchema extends Schema {
            sfAssertionPhase "static";
            greeting extends String { description "what it says"; }
            port extends Integer;
        }
        greeting TBD;
        port TBD;
        verbose TBD;
    }
    pause extends Delay { action extends Prim; }
}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "greeter.sf").write_text(GREETER)
    (tmp_path / "broken.sf").write_text('sfConfig extends Nothing;\n')
    (tmp_path / "notes.txt").write_text("not a template\n")
    return tmp_path


def test_a_template_asks_for_each_tbd_with_the_kinds_and_description_of_its_schema(folder: Path) -> None:
    templates = {template.name: template for template in list_templates([folder])}

    assert sorted(templates) == ["broken", "greeter"]
    assert templates["greeter"].fields == (
        TemplateField(path="web:greeting", kinds=("String",), description="what it says"),
        TemplateField(path="web:port", kinds=("Integer",)),
        TemplateField(path="web:verbose"),
        TemplateField(path="pause:time", kinds=("Long", "Integer"),
                      description="milliseconds to wait before deploying action"),
    )
    assert [field.input for field in templates["greeter"].fields] == ["string", "integer", "literal", "integer"]


def test_a_template_that_does_not_parse_is_listed_with_the_error_that_says_where(folder: Path) -> None:
    broken = next(template for template in list_templates([folder]) if template.name == "broken")

    assert broken.fields == ()
    assert broken.error.startswith(f"{folder / 'broken.sf'}:1:")
    assert "Nothing" in broken.error


def test_values_of_the_wrong_kind_or_missing_are_refused_field_by_field(folder: Path) -> None:
    greeter = next(template for template in list_templates([folder]) if template.name == "greeter")

    with pytest.raises(TemplateError) as excinfo:
        greeter.resolve({"web:greeting": "hi", "web:port": "eighty", "pause:time": "", "web:nothing": "1"})

    assert excinfo.value.problems == {
        "web:port": "must be Integer, not 'eighty'",
        "web:verbose": "a value is required",
        "pause:time": "a value is required",
        "web:nothing": "greeter has no TBD attribute 'web:nothing'",
    }


def test_the_values_given_replace_the_tbds_in_the_resolved_description(folder: Path) -> None:
    greeter = next(template for template in list_templates([folder]) if template.name == "greeter")

    config = greeter.resolve({"web:greeting": 'say "hi"', "web:port": "8080", "web:verbose": "true",
                              "pause:time": "250"})

    assert config["web"]["greeting"] == 'say "hi"'  # a String field takes the text as it is, quotes too
    assert config["web"]["port"] == 8080
    assert config["web"]["verbose"] is True
    assert config["pause"]["time"] == 250


def test_the_examples_shipped_with_sd_actors_are_the_default_templates() -> None:
    names = [template.name for template in list_templates(default_template_folders())]

    assert names == ["domain", "mgtConsole", "parallel-pool", "pool", "qemu-pool", "scheduler"]
