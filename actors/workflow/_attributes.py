"""How workflow components read their attributes: the templates they deploy, flags, counts, times.

Workflow components deploy their children themselves (``has_children`` is False), so the
nested descriptions in their attributes are templates. A template is deployed as it stands:
the description object itself becomes the child's description, so a LAZY link elsewhere that
names the template reaches the running child (the runtime finds running components by their
description, as SmartFrog resolved links in the live tree, where the child replaces its
template). Whether the template was written ``extends LAZY``/``DATA`` does not matter to the
child: only the nested descriptions of a Compound decide what it creates.
"""

from __future__ import annotations

from typing import Final

from sd_actors.actors import ComponentContext, DeploymentError
from sd_actors.descriptions import ComponentDescription, Reference, value_kind

_ABSENT: Final = object()


def child_templates(context: ComponentContext) -> list[tuple[str, ComponentDescription]]:
    """The components a Sequence or Parallel runs, in definition order.

    Every eager nested description (an eager description without ``sfClass`` fails to deploy, as
    in a Compound), and every ``extends LAZY``/``DATA`` one that names an ``sfClass``; other
    non-eager descriptions are data.
    """
    return [(name, value) for name, value in context.description.items()
            if isinstance(value, ComponentDescription) and (value.eager or "sfClass" in value)]


def template(context: ComponentContext, name: str) -> ComponentDescription:
    """The template in attribute ``name`` (``action``, a continuation, …).

    :raises DeploymentError: when it is missing or not a component description.
    """
    found = optional_template(context, name)
    if found is None:
        raise DeploymentError(f"{context.ref.name_text}: attribute {name!r} is missing: give the component "
                              f"to run, e.g. `{name} extends LAZY DoNothing {{ time 1000; }}`")
    return found


def optional_template(context: ComponentContext, name: str) -> ComponentDescription | None:
    """Like :func:`template`; None when the attribute is absent."""
    value = context.description.get(name, _ABSENT)
    if value is _ABSENT:
        return None
    if not isinstance(value, ComponentDescription):
        hint = (" (a reference to a template cannot be deployed: write `extends` instead)"
                if isinstance(value, Reference) else "")
        raise DeploymentError(f"{context.ref.name_text}: attribute {name!r} must be a component description, "
                              f"found {value_kind(value)} {value!r}{hint}")
    return value


def flag(context: ComponentContext, name: str, default: bool) -> bool:
    value = context.typed_attribute(name, bool, default)
    assert isinstance(value, bool)
    return value


def integer(context: ComponentContext, name: str, default: int) -> int:
    value = context.typed_attribute(name, int, default)
    assert isinstance(value, int)
    return int(value)


def text(context: ComponentContext, name: str, default: str | None) -> str | None:
    value = context.typed_attribute(name, str, default)
    assert value is None or isinstance(value, str)
    return value


def milliseconds(context: ComponentContext, name: str, default: float | None = None) -> float:
    """Attribute ``name``, a time in milliseconds (SmartFrog's unit), required when ``default`` is None."""
    if default is None:
        value = context.typed_attribute(name, (int, float))
    else:
        value = context.typed_attribute(name, (int, float), default)
    assert isinstance(value, int | float)
    return float(value)
