"""A running application takes a changed description: what changed, and who applies it.

``sd-actors up`` of an application that runs compares the description it was deployed from with
the new one. Each component type says which attributes it can take new values of while it runs
(``Component.updatable``); when every change is one of those, each changed component gets its new
values and applies them (``Component.update``), one component after another. Anything else is
refused before a thing changes, naming what changed where.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, TypeGuard

from sd_actors.actors._component import Component, component_failed
from sd_actors.actors._errors import DeploymentError, UnknownComponent
from sd_actors.descriptions import ComponentDescription, values_equal

if TYPE_CHECKING:
    from sd_actors.actors._runtime import ComponentRef
    from sd_actors.actors._system import System

logger = logging.getLogger(__name__)

_ABSENT: Final = object()


class UpdateRefused(DeploymentError):
    """The new description changes something the running application cannot take in place."""

    def __init__(self, app: str, reasons: list[str]) -> None:
        super().__init__(f"{app} runs with a different description, and it cannot take these changes while it "
                         f"runs: {'; '.join(reasons)}")
        self.reasons = tuple(reasons)
        self.hint = (f"sd-actors down {app}, then up, to apply them (a running application takes only changes "
                     "of attributes its component types can update, e.g. a VirtualCluster's size)")


@dataclass(frozen=True, slots=True)
class Change:
    """New values for some attributes of the running component at ``path``."""

    path: tuple[str, ...]
    values: Mapping[str, object]
    """Attribute name → new value (``_ABSENT`` when the attribute goes)."""

    @property
    def text(self) -> str:
        return f"{':'.join(self.path)}: {', '.join(self.values)}"


def plan_update(app: str, old: ComponentDescription, new: ComponentDescription,
                component_types: Mapping[str, type[Component]]) -> list[Change]:
    """The changes that turn ``old`` (the description ``app`` was deployed from) into ``new``.

    :raises UpdateRefused: a change no running component can take; nothing has changed.
    """
    changes: list[Change] = []
    refusals: list[str] = []
    _compare((app,), old, new, component_types, changes, refusals)
    if refusals:
        raise UpdateRefused(app, refusals)
    return changes


def _compare(path: tuple[str, ...], old: ComponentDescription, new: ComponentDescription,
             component_types: Mapping[str, type[Component]], changes: list[Change], refusals: list[str]) -> None:
    where = ":".join(path)
    if old.get("sfClass") != new.get("sfClass"):
        refusals.append(f"{where}: sfClass changed from {old.get('sfClass')!r} to {new.get('sfClass')!r}")
        return
    component_type = component_types.get(str(new.get("sfClass")))
    with_children = component_type is not None and component_type.has_children
    updatable = component_type.updatable if component_type is not None else frozenset()
    changed: dict[str, object] = {}
    for key in dict.fromkeys([*old.keys(), *new.keys()]):
        before, after = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if with_children and _is_child(before) and _is_child(after):
            _compare((*path, key), before, after, component_types, changes, refusals)
        elif before is _ABSENT or after is _ABSENT or not values_equal(before, after):
            changed[key] = after
    refused = [key for key in changed if key not in updatable]
    if refused:
        what = ", ".join(f"{key} {_how(old.get(key, _ABSENT), new.get(key, _ABSENT))}" for key in refused)
        can = f" ({component_type.__name__} can change only {', '.join(sorted(updatable))})" \
            if component_type is not None and updatable else ""
        refusals.append(f"{where}: {what}{can}")
    elif changed:
        changes.append(Change(path, changed))


def _is_child(value: object) -> TypeGuard[ComponentDescription]:
    return isinstance(value, ComponentDescription) and value.eager and "sfClass" in value


def _how(before: object, after: object) -> str:
    if before is _ABSENT:
        return "was added"
    if after is _ABSENT:
        return "was removed"
    if isinstance(before, ComponentDescription) or isinstance(after, ComponentDescription):
        return "changed"
    return f"changed from {before!r} to {after!r}"


def running_components(system: System, app: str, changes: list[Change]) -> list[tuple[ComponentRef, Change]]:
    """The running component each change goes to.

    :raises UpdateRefused: one is not running in this System (another host runs it, or it ended).
    """
    found: list[tuple[ComponentRef, Change]] = []
    refusals: list[str] = []
    for change in changes:
        try:
            ref = system.lookup(change.path)
        except UnknownComponent:
            refusals.append(f"{':'.join(change.path)} is not running")
            continue
        component_type = system.runtime.component_types.get(ref.component_class)
        if not ref.alive or component_type is None or not isinstance(ref.component, component_type):
            state = ref.state.value if ref.state else "new"
            refusals.append(f"{ref.name_text} is not running here ({state}, {type(ref.component).__name__}): only "
                            "components this daemon runs itself take changes")
            continue
        found.append((ref, change))
    if refusals:
        raise UpdateRefused(app, refusals)
    return found


def apply_update(targets: list[tuple[ComponentRef, Change]]) -> None:
    """Hand each component its new values, one after another. When one fails, it and those before it
    get their old values back (and apply them again), and its failure is raised.

    :raises ComponentFailed: with the failing component's record.
    """
    done: list[tuple[ComponentRef, dict[str, object]]] = []
    for ref, change in targets:
        try:
            old = ref.call(functools.partial(_give, values=change.values))
        except Exception as error:
            for earlier, values in reversed(done):
                try:
                    earlier.call(functools.partial(_give, values=values))
                except Exception:  # the failure being reported matters more; say this one in the log
                    logger.exception("%s: putting the old values back failed", earlier.name_text)
            raise component_failed(error, ref.path, "update") from error
        done.append((ref, old))


def _give(component: Component, values: Mapping[str, object]) -> dict[str, object]:
    """In the component's thread: set ``values``, call ``update``; on failure the old values are back.
    Returns the old values."""
    description = component.context.description
    old = {key: description.get(key, _ABSENT) for key in values}
    _set(description, values)
    try:
        component.update(frozenset(values))
    except BaseException:
        _set(description, old)
        raise
    return old


def _set(description: ComponentDescription, values: Mapping[str, object]) -> None:
    for key, value in values.items():
        if value is _ABSENT:
            if key in description:
                description.remove(key)
        else:
            description.set(key, value.thaw(description) if isinstance(value, ComponentDescription) else value)
