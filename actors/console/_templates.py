"""Templates: descriptions in configured folders, and the TBD attributes a user fills in to launch one.

A template is any ``.sf`` file whose ``sfConfig`` may still hold ``TBD`` values (SmartFrog's "to be
defined"). Resolving it stops at the first phases, before the link phase would reject a TBD, so the
TBDs can be listed with what the schema of the component holding each one says about it: the kinds
it accepts and its description. The user's values go back as ``--set``-style overrides, and the
whole description is resolved once more, so the schemas check the values a second time.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sd_actors.descriptions import (
    TBD,
    Apply,
    ComponentDescription,
    DescriptionError,
    format_value,
    parse_file,
    parse_literal,
    parse_root,
    value_kind,
)

_JAVA_KINDS: Final = {"java.lang.Integer": "Integer", "java.lang.Long": "Long", "java.lang.Float": "Float",
                      "java.lang.Double": "Double", "java.lang.String": "String", "java.lang.Boolean": "Boolean"}
APP_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


class TemplateError(Exception):
    """A template cannot be launched with the values given; ``problems`` maps each field to what is wrong."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in problems.items()))
        self.problems = dict(problems)


@dataclass(frozen=True, slots=True)
class TemplateField:
    """One TBD attribute of a template.

    :param path: where it is, relative to ``sfConfig`` (``"web:greeting"``), as ``--set`` takes it.
    :param kinds: the value kinds its schema accepts (``("Long", "Integer")``); empty: any literal.
    :param description: its schema's description, for people.
    """

    path: str
    kinds: tuple[str, ...] = ()
    description: str = ""

    @property
    def input(self) -> str:
        """The form control that fits: ``boolean``, ``integer``, ``number``, ``string`` or ``literal``."""
        kinds = set(self.kinds)
        if kinds == {"Boolean"}:
            return "boolean"
        if kinds and kinds <= {"Integer", "Long"}:
            return "integer"
        if kinds and kinds <= {"Integer", "Long", "Float", "Double"}:
            return "number"
        if kinds == {"String"}:
            return "string"
        return "literal"

    def literal(self, text: str) -> str:
        """``text`` as the SmartFrog literal to set; ValueError says what is wrong with it."""
        if not text.strip():
            raise ValueError("a value is required")
        if self.input == "string":
            return format_value(text)
        value = parse_literal(text.strip())
        if not self.kinds:
            return format_value(value)
        if isinstance(value, str) and "String" in self.kinds:
            return format_value(text)
        kind = value_kind(value)
        if kind not in self.kinds:
            raise ValueError(f"must be {' or '.join(self.kinds)}, not {text.strip()!r}")
        return format_value(value)


@dataclass(frozen=True, slots=True)
class Template:
    """A description file a user may launch; ``error`` says why it cannot be, when it cannot."""

    name: str
    path: Path
    fields: tuple[TemplateField, ...] = ()
    error: str = ""

    def resolve(self, values: Mapping[str, str]) -> ComponentDescription:
        """The resolved ``sfConfig`` with ``values`` (field path → text) in place of the TBDs.

        :raises TemplateError: a field is missing or has a value of the wrong kind.
        :raises DescriptionError: the description does not resolve with these values.
        """
        problems: dict[str, str] = {}
        overrides: dict[str, str] = {}
        for field in self.fields:
            try:
                overrides[field.path] = field.literal(values.get(field.path, ""))
            except ValueError as error:
                problems[field.path] = str(error)
        unknown = sorted(set(values) - {field.path for field in self.fields})
        for path in unknown:
            problems[path] = f"{self.name} has no TBD attribute {path!r}"
        if problems:
            raise TemplateError(problems)
        return parse_file(self.path, overrides=overrides)


def list_templates(folders: Sequence[Path]) -> list[Template]:
    """The ``.sf`` files of ``folders`` (not their sub-folders), each with its TBD fields, by name."""
    templates = []
    for folder in folders:
        for path in sorted(folder.glob("*.sf")):
            templates.append(read_template(path))
    return templates


def read_template(path: Path) -> Template:
    try:
        root = parse_root(path)
    except DescriptionError as error:
        return Template(name=path.stem, path=path, error=error.render())
    config = root.get("sfConfig")
    if not isinstance(config, ComponentDescription):
        return Template(name=path.stem, path=path, error=f"{path}: no sfConfig component to launch")
    return Template(name=path.stem, path=path, fields=tuple(_tbd_fields(config, ())))


def _tbd_fields(cd: ComponentDescription, path: tuple[str, ...]) -> Iterator[TemplateField]:
    for key in list(cd.raw_keys()):
        if not isinstance(key, str):
            continue
        value = cd.raw_get(key)
        if value is TBD:
            kinds, description = _schema_of(cd, key)
            yield TemplateField(path=":".join((*path, key)), kinds=kinds, description=description)
        elif isinstance(value, ComponentDescription) and value.eager:
            yield from _tbd_fields(value, (*path, key))


def _schema_of(holder: ComponentDescription, name: str) -> tuple[tuple[str, ...], str]:
    """What the schemas of ``holder`` say about attribute ``name``: accepted kinds and description."""
    for key in list(holder.raw_keys()):
        schema = holder.raw_get(key)
        if not (isinstance(schema, Apply) and schema.kind == "ASSERT"):
            continue
        entry = schema.body.raw_get(name, None)
        if not isinstance(entry, Apply):
            continue
        classes = entry.body.raw_get("class", "anyClass")
        names = classes if isinstance(classes, list) else [classes]
        kinds = tuple(_JAVA_KINDS.get(kind, kind) for kind in names if isinstance(kind, str))
        description = entry.body.raw_get("description", "")
        return (() if "anyClass" in kinds else kinds), (description if isinstance(description, str) else "")
    return (), ""
