"""Resolution phases in SmartFrog's order: type, place, function, sfConfig, link."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sd_actors.descriptions import _names
from sd_actors.descriptions._errors import (
    AssertionFailed,
    CyclicReference,
    DescriptionError,
    FinalAttributeOverridden,
    FunctionError,
    NestingTooDeep,
    PlacementError,
    PropertyMissing,
    SchemaViolation,
    SfConfigError,
    SourceLocation,
    TypeResolutionError,
    UnresolvedReference,
    UnresolvedTBD,
    UserPhaseError,
    close_match_hint,
)
from sd_actors.descriptions._functions import FUNCTIONS, NON_ARGUMENTS, Function, FunctionFailed
from sd_actors.descriptions._model import (
    ATTRIB,
    CONSTANT,
    ENVPROPERTY,
    HERE,
    HOST,
    IENVPROPERTY,
    IPROPERTY,
    NO_DEFAULT,
    PARENT,
    PROCESS,
    PROPERTY,
    ROOT,
    TBD,
    THIS,
    Apply,
    ComponentDescription,
    Double,
    Long,
    PlacementSlot,
    Reference,
    copy_value,
    value_kind,
)

DEFAULT_PHASES: Final = ("type", "place", "function", "sfConfig", "link")

# The CONSTANT values SmartFrog descriptions use (Java static fields), by name.
CONSTANTS: Final[Mapping[str, object]] = {
    "java.lang.Integer.MAX_VALUE": 2**31 - 1,
    "java.lang.Integer.MIN_VALUE": -(2**31),
    "java.lang.Long.MAX_VALUE": Long(2**63 - 1),
    "java.lang.Long.MIN_VALUE": Long(-(2**63)),
    "java.lang.Boolean.TRUE": True,
    "java.lang.Boolean.FALSE": False,
    "java.io.File.separator": os.sep,
    "java.io.File.pathSeparator": os.pathsep,
    "java.lang.Double.MAX_VALUE": Double(1.7976931348623157e308),
    "java.lang.Float.MAX_VALUE": 3.4028234663852886e38,
}

_LIVE: Final = 1
_DONE: Final = 2


class _Lazy(Exception):
    """A LAZY reference was met: the link stays a reference, resolved at run time."""


Text = str | Callable[[], str]


class _Unresolved(Exception):
    """A reference cannot be resolved; turned into a DescriptionError where the link is known.

    Message and hint may be functions: an ATTRIB search fails at many levels before it succeeds,
    and only a failure that is reported needs its text (close-match hints are costly).
    """

    def __init__(self, message: Text, hint: Text | None = None, *,
                 error: type[DescriptionError] = UnresolvedReference, at: SourceLocation | None = None) -> None:
        super().__init__()
        self._message = message
        self._hint = hint
        self.error = error
        self.at = at

    @property
    def message(self) -> str:
        return self._message if isinstance(self._message, str) else self._message()

    @property
    def hint(self) -> str | None:
        return self._hint if self._hint is None or isinstance(self._hint, str) else self._hint()

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True, slots=True)
class _SchemaRule:
    """One schema entry with its settings resolved."""

    name: str
    label: str
    optional: bool
    binding: str
    allowed: tuple[str, ...]
    # Types of values that pass this rule without a closer look (checked once, here); _Missing
    # when the attribute may be absent.
    passing: frozenset[type]
    # What is wrong with the schema element itself, reported on every holder (nothing passes).
    problem: str | None = None

    @classmethod
    def of(cls, name: str, label: str, optional: bool, binding: str, allowed: tuple[str, ...]) -> _SchemaRule:
        passing: set[type] = {type(TBD)}  # a TBD is reported, with its fix, by the link phase
        if optional:
            passing.add(_Missing)
        if binding != "lazy":
            passing.update(kind for kind, name_of_kind in _KIND_OF_TYPE.items()
                           if "anyClass" in allowed or name_of_kind in allowed)
        return cls(name, label, optional, binding, allowed, frozenset(passing))

    @classmethod
    def broken(cls, problem: str) -> _SchemaRule:
        return cls("", "", False, "", (), frozenset(), problem)


class _StaticAssertion:
    """Placeholder for an assertion checked at parse time and dropped from the result."""


_CHECKED: Final = _StaticAssertion()


def _location_of(cd: ComponentDescription, key: str) -> SourceLocation | None:
    return cd.locations.get(key, cd.location)


def display_path(cd: ComponentDescription, key: object | None = None) -> str:
    names = cd.path()
    if key is not None:
        names.append(key if isinstance(key, str) else repr(key))
    return ":".join(names) if names else "ROOT"


class Resolver:
    """Runs the phases over one parsed description (one instance per parse)."""

    def __init__(
        self,
        root: ComponentDescription,
        *,
        properties: Mapping[str, str],
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.root = root
        self.properties = properties
        self.environment = os.environ if environment is None else environment
        self._next = -1
        self._type_mode = False
        # The parser tells whether any ``a:b:c value;`` was written; without one, no pass is needed.
        self.has_placements = True
        # Literal schemas are shared by every component that extends them, not copied (user phases,
        # which may change any description, turn this off).
        self.share_schemas = True
        # Descriptions mark where placements wait (holds_placements), so the place phase visits
        # only those; user phases, which may change descriptions in any way, turn this off.
        self.placements_marked = True
        self._constructed: dict[int, Apply] = {}
        self._schema_rules: dict[int, _SchemaRule] = {}
        # A shared (frozen) schema's rules, in order, by id(schema body); the body is kept with them
        # so that its id stays its own. None: it holds other assertions too, checked one by one.
        self._schemas: dict[int, tuple[ComponentDescription, tuple[_SchemaRule, ...] | None]] = {}
        self._frozen_schema = False
        self._in_progress: set[tuple[int, object]] = set()
        self._link_live: set[int] = set()
        # sfFunctionClass names (sd-actors' or SmartFrog's) seen so far and their functions.
        self._functions: dict[str, Function] = {}
        self.errors: list[DescriptionError] = []

    # ================================================================ references
    def resolve(self, reference: Reference, cd: ComponentDescription) -> object:
        """Resolve an eager reference from ``cd`` (chaining through links, evaluating functions)."""
        if reference.data:
            return reference
        if reference.lazy:
            raise _Lazy()
        try:
            return self._walk(reference, 0, cd)
        except (_Unresolved, _Lazy):
            if reference.optional:
                return None if reference.default is NO_DEFAULT else reference.default
            raise

    def _walk(self, reference: Reference, index: int, current: object) -> object:
        parts = reference.parts
        type_mode = self._type_mode
        while index < len(parts):
            part = parts[index]
            kind = part.kind
            if type_mode and isinstance(current, ComponentDescription) and current.prototypes \
                    and current.state != _LIVE:
                self._resolve_types(current)
            if type(current) is not ComponentDescription:
                raise _Unresolved(
                    f"{':'.join(self._part_text(p) for p in parts[:index])} is a {value_kind(current)}, "
                    "not a component", "only a component description has attributes to follow")
            if kind == ATTRIB:
                return self._attrib(reference, index, current)
            if kind == HERE:
                current = self._here(reference, index, current)
            elif kind == ROOT:
                current = current.root()
            elif kind == PARENT:
                if current.parent is None:
                    raise _Unresolved("PARENT of the outermost component", "remove PARENT or use ROOT")
                current = current.parent
            elif kind == THIS:
                pass
            else:
                current = self._special(reference, index)
            index += 1
        return current

    def _attrib(self, reference: Reference, index: int, cd: ComponentDescription) -> object:
        # ATTRIB retries the whole remaining path one level up on any failure (not on LAZY);
        # when every level fails, the closest failure is the one worth reporting.
        name = reference.parts[index].name or ""
        last = index + 1 == len(reference.parts)
        first_failure: _Unresolved | None = None
        node: ComponentDescription | None = cd
        while node is not None:
            if name in node._attributes:
                try:
                    value = self._here(reference, index, node)
                    return value if last else self._walk(reference, index + 1, value)
                except _Unresolved as failure:
                    if first_failure is None:
                        first_failure = failure
            node = node.parent
        if first_failure is not None:
            raise first_failure
        raise _Unresolved(
            lambda: f"reference {reference.path_text()!r} not found: no attribute {name!r} here or in an "
            "enclosing component",
            lambda: close_match_hint(name, _visible_names(cd), otherwise=f"define {name!r} or fix the spelling"),
        )

    def _here(self, reference: Reference, index: int, cd: ComponentDescription) -> object:
        name = reference.parts[index].name or ""
        if name not in cd._attributes:
            raise _Unresolved(
                lambda: f"reference {reference.path_text()!r} not found: {display_path(cd)} has no attribute {name!r}",
                lambda: close_match_hint(name, cd.keys(), otherwise=f"define {name!r} or fix the spelling"))
        if index > 0 and "sfLocal" in cd.raw_tags_mapping().get(name, _NO_TAGS):
            raise _Unresolved(
                lambda: f"reference {reference.path_text()!r}: attribute {name!r} is tagged sfLocal",
                "an sfLocal attribute is only visible from inside its own component")
        return self.value_of(cd, name)

    def _special(self, reference: Reference, index: int) -> object:
        part = reference.parts[index]
        name = part.name or ""
        if part.kind in (PROPERTY, IPROPERTY):
            if name not in self.properties and name in STANDARD_PROPERTIES:
                return STANDARD_PROPERTIES[name]() if part.kind == PROPERTY else \
                    self._integer_of(STANDARD_PROPERTIES[name](), f"property {name!r}")
            if name not in self.properties:
                raise _Unresolved(f"property {name!r} is not set", f"pass -D {name}=VALUE",
                                  error=PropertyMissing)
            text = self.properties[name]
            return text if part.kind == PROPERTY else self._integer_of(text, f"property {name!r}")
        if part.kind in (ENVPROPERTY, IENVPROPERTY):
            if name not in self.environment:
                raise _Unresolved(f"environment variable {name!r} is not set",
                                  f"export {name}=VALUE, or make the reference OPTIONAL(default) or LAZY",
                                  error=PropertyMissing)
            text = self.environment[name]
            return text if part.kind == ENVPROPERTY else self._integer_of(text, f"environment variable {name!r}")
        if part.kind == CONSTANT:
            if name not in CONSTANTS:
                python_constant = _python_constant(name)
                if python_constant is not _MISSING:
                    return python_constant
                raise _Unresolved(f"unknown CONSTANT {name!r}",
                                  close_match_hint(name, CONSTANTS, otherwise="CONSTANT names a constant of a "
                                                   "loaded Python module (\"os.sep\") or one of: "
                                                   + ", ".join(sorted(CONSTANTS))))
            return CONSTANTS[name]
        if part.kind in (HOST, PROCESS):
            raise _Unresolved(f"{part.kind} references only exist at run time",
                              f"write LAZY {reference.path_text()}")
        raise _Unresolved(f"unknown reference part {part.kind}")

    @staticmethod
    def _integer_of(text: str, what: str) -> int:
        try:
            return int(text.strip())
        except ValueError:
            raise _Unresolved(f"{what} is {text!r}, not an integer") from None

    @staticmethod
    def _part_text(part: object) -> str:
        from sd_actors.descriptions._printer import format_part

        return format_part(part, first=True)  # type: ignore[arg-type]

    # ================================================================ values
    def value_of(self, cd: ComponentDescription, key: str) -> object:
        """The value of ``cd.key`` with links followed and functions evaluated (chaining)."""
        # The hot path of the link phase: it reads the attribute mapping directly, dispatches on
        # the exact type (Reference and Apply have no subclasses) and marks what it is resolving
        # inline (a context manager here cost a fifth of the phase).
        value = cd._attributes.get(key)
        kind = type(value)
        if kind is Reference:
            reference: Reference = value  # type: ignore[assignment]
            if reference.data:
                return reference
            if reference.lazy:
                raise _Lazy()
            parts = reference.parts
            if len(parts) == 1 and parts[0].kind == ATTRIB:
                # Most links are one name whose nearest definition is a literal: nothing to follow
                # further, so no cycle to guard against. Anything else takes the general way.
                name = parts[0].name or ""
                node: ComponentDescription | None = cd
                while node is not None:
                    found = node._attributes.get(name, _MISSING)
                    if found is not _MISSING:
                        if type(found) in _PLAIN or type(found) is ComponentDescription:
                            return found
                        break
                    node = node.parent
            marker = (id(cd), key)
            in_progress = self._in_progress
            if marker in in_progress:
                raise self._cycle(cd, key)
            in_progress.add(marker)
            try:
                return self._walk(reference, 0, cd)
            except (_Unresolved, _Lazy):
                if reference.optional:
                    return None if reference.default is NO_DEFAULT else reference.default
                raise
            finally:
                in_progress.discard(marker)
        if kind is Apply:
            apply: Apply = value  # type: ignore[assignment]
            if apply.lazy:
                raise _Lazy()
            marker = (id(cd), key)
            in_progress = self._in_progress
            if marker in in_progress:
                raise self._cycle(cd, key)
            in_progress.add(marker)
            try:
                if apply.kind == "ASSERT":
                    return self._check_assertion(cd, key, apply)
                return self._apply(apply)
            finally:
                in_progress.discard(marker)
        if value is TBD:
            raise _Unresolved(f"{display_path(cd, key)} is still TBD (to be defined)",
                              _tbd_hint(cd, key), error=UnresolvedTBD, at=_tbd_location(cd, key))
        return value

    @staticmethod
    def _cycle(cd: ComponentDescription, key: str) -> _Unresolved:
        """``cd.key`` was met again while it was being resolved: a circle of links."""
        return _Unresolved(f"cyclic reference: {display_path(cd, key)} depends on itself",
                           "break the circle of links", error=CyclicReference)

    def _apply(self, apply: Apply) -> object:
        body = apply.body
        attributes = body._attributes
        lazy = False
        arguments: list[object] = []
        # Resolving an argument replaces values, never adds or removes keys: iterating over the
        # mapping itself is safe (and spares a copy of the keys per application).
        for key, raw in attributes.items():
            if type(key) is not str or key in NON_ARGUMENTS:
                continue
            kind = type(raw)
            if kind is not Reference and kind is not Apply and raw is not TBD:
                arguments.append(raw)  # a literal (or a description): its own value
                continue
            try:
                value = self.value_of(body, key)
            except _Lazy:
                lazy = True
                raw = attributes.get(key)
                if isinstance(raw, Reference):
                    body.replace_value(key, raw.with_flags(lazy=True))
                elif isinstance(raw, Apply):
                    raw.lazy = True
                continue
            if type(value) is ComponentDescription:
                if attributes.get(key) is not value:
                    self._check_containment(body, key, value)
            else:
                body.replace_value(key, value)
            arguments.append(value)
        if lazy:
            raise _Lazy()
        name = attributes.get("sfFunctionClass", "")
        if type(name) is not str:
            name = apply.function
        function = self._functions.get(name)
        if function is None:
            function = FUNCTIONS.get(_names.canonical_function(name) or "")
            if function is not None:
                self._functions[name] = function
        if function is None:
            raise _Unresolved(f"unknown function {name!r}",
                              close_match_hint(name.rsplit(".", 1)[-1], _names.FUNCTION_NAMES,
                                               otherwise="sfFunctionClass must name a built-in function"),
                              error=FunctionError, at=apply.location)
        try:
            return function(body, arguments, self)
        except FunctionFailed as failure:
            short = name.rsplit(".", 1)[-1]
            raise _Unresolved(f"{short}: {failure}", failure.hint, error=FunctionError, at=apply.location) from None

    # -- EvaluationContext for functions -----------------------------------------------------------
    def next_counter(self, base: int | None) -> int:
        # As SmartFrog's Next: jump to base when it is ahead, else count up by one.
        self._next = base if base is not None and base > self._next else self._next + 1
        return self._next

    def resolve_reference_at(self, reference: Reference, where: ComponentDescription) -> object:
        return self.resolve(reference, where)

    def parse_reference(self, text: str, location: SourceLocation | None) -> Reference:
        from sd_actors.descriptions._parser import reparse_reference

        try:
            return reparse_reference(text, location=location)
        except DescriptionError as error:
            raise FunctionFailed(f"{text!r} is not a reference: {error.message}") from None

    # ================================================================ assertions and schemas
    def _check_assertion(self, holder: ComponentDescription, key: str, apply: Apply) -> object:
        body = apply.body
        self._frozen_schema = body.frozen
        phase = body.get("sfAssertionPhase", "dynamic")
        pristine = body.thaw(holder) if phase == "dynamic" else None
        if phase not in ("static", "staticLazy", "dynamic"):
            raise _Unresolved(f"sfAssertionPhase is {phase!r}", 'use "static", "staticLazy" or "dynamic"',
                              error=FunctionError)
        rules = self._schema_of(body) if body.frozen else None
        failures = self._assertion_failures(holder, body, phase) if rules is None else \
            self._schema_failures(holder, rules)
        if failures:
            schema = any("schema" in f for f in failures)
            raise _Unresolved(
                ("schema check failed for " if schema else "assertions failed for ")
                + f"{display_path(holder)}: " + "; ".join(failures),
                "give the attribute a value of the kind the schema asks for" if schema
                else "change the values so that every assertion holds",
                error=SchemaViolation if schema else AssertionFailed)
        if pristine is not None:
            if "sfAssertionPhase" in pristine:
                pristine.remove("sfAssertionPhase")
            return Apply("ASSERT", pristine, lazy=True, location=apply.location)
        return _CHECKED

    def _schema_failures(self, holder: ComponentDescription, rules: tuple[_SchemaRule, ...]) -> list[str]:
        """What ``holder`` breaks of a shared schema's rules (most values pass on their type alone)."""
        failures: list[str] = []
        attributes = holder._attributes
        for rule in rules:
            if type(attributes.get(rule.name, _MISSING)) in rule.passing:
                continue
            if rule.problem is not None:
                failures.append(rule.problem)
                continue
            problem = self._apply_rule(holder, rule)
            if problem:
                failures.append(problem)
        return failures

    def _assertion_failures(self, holder: ComponentDescription, body: ComponentDescription, phase: object
                            ) -> list[str]:
        """What fails of the assertions and schema elements in ``body``, checked on ``holder``."""
        failures: list[str] = []
        for name in list(body.raw_keys()):
            if not isinstance(name, str) or name in ("sfFunctionClass", "sfAssertionPhase"):
                continue
            element = body.raw_get(name)
            if isinstance(element, Apply) and element.kind == "APPLY" and \
                    _names.canonical_function(element.function) == _names.function("CheckSchemaElement"):
                problem = self._check_schema_element(holder, element)
                if problem:
                    failures.append(problem)
                continue
            try:
                value = self.value_of(body, name)
            except _Lazy:
                if phase == "static":
                    raise _Unresolved("static assertion cannot be checked: it uses LAZY attributes",
                                      'use sfAssertionPhase "staticLazy" or "dynamic"', error=AssertionFailed
                                      ) from None
                continue
            if name.startswith("sf"):
                continue
            if not isinstance(value, bool):
                failures.append(f"{name}: has non-boolean value {value_kind(value)}")
            elif not value:
                failures.append(f"{name}: evaluates to false")
        return failures

    def _schema_of(self, body: ComponentDescription) -> tuple[_SchemaRule, ...] | None:
        """The rules of a shared (frozen) schema, worked out once; None if it holds other assertions."""
        known = self._schemas.get(id(body))
        if known is not None:
            return known[1]
        rules: list[_SchemaRule] | None = []
        for name, element in body._attributes.items():
            if not isinstance(name, str) or name in ("sfFunctionClass", "sfAssertionPhase"):
                continue
            if rules is not None and isinstance(element, Apply) and element.kind == "APPLY" and \
                    _names.canonical_function(element.function) == _names.function("CheckSchemaElement"):
                rule = self._schema_rule(element)
                rules.append(_SchemaRule.broken(rule) if isinstance(rule, str) else rule)
            else:
                rules = None
        result = None if rules is None else tuple(rules)
        self._schemas[id(body)] = (body, result)
        return result

    def _check_schema_element(self, holder: ComponentDescription, element: Apply) -> str | None:
        # A shared (frozen) schema's rules are worked out once, not once per component.
        cached = self._schema_rules.get(id(element)) if self._frozen_schema else None
        if cached is not None:
            return self._apply_rule(holder, cached)
        rule = self._schema_rule(element)
        if isinstance(rule, str):
            return rule
        if self._frozen_schema:
            self._schema_rules[id(element)] = rule
        return self._apply_rule(holder, rule)

    def _schema_rule(self, element: Apply) -> _SchemaRule | str:
        """An element's settings, resolved: the rule to check every holder against (or what is wrong)."""
        body = element.body
        settings: dict[str, object] = {}
        for setting in ("name", "optional", "binding", "class", "description"):
            raw = body.raw_get(setting, _MISSING)
            if raw is _MISSING:
                continue
            if type(raw) is Reference or type(raw) is Apply or raw is TBD:
                try:
                    raw = self.value_of(body, setting)
                except (_Unresolved, _Lazy):
                    return f"schema element {body.get('name')!r}: {setting} cannot be resolved"
            settings[setting] = raw
        name = settings.get("name")
        if not isinstance(name, str):
            return "schema element without a name"
        description = settings.get("description")
        label = f"{name!r}" + (f" ({description})" if isinstance(description, str) and description else "")
        binding = settings.get("binding", "anyBinding")
        if binding not in ("anyBinding", "eager", "lazy"):
            return f"schema: binding of {label} must be \"eager\", \"lazy\" or \"anyBinding\", not {binding!r}"
        return _SchemaRule.of(name, label, settings.get("optional") is True, str(binding),
                           tuple(_class_names(settings.get("class", "anyClass"))))

    def _apply_rule(self, holder: ComponentDescription, rule: _SchemaRule) -> str | None:
        name, label = rule.name, rule.label
        raw = holder.raw_get(name, _MISSING)
        if raw is TBD:
            return None  # reported as a TBD, with the fix, by the link phase
        if raw is _MISSING:
            value: object = _MISSING
        elif type(raw) in _PLAIN:
            value = raw
        elif _is_lazy(raw):
            value = _LAZY_VALUE  # what value_of would say, without raising _Lazy to say it
        else:
            try:
                value = self.value_of(holder, name)
            except _Lazy:
                value = _LAZY_VALUE
            except _Unresolved:
                value = _MISSING
        if value is _MISSING:
            return None if rule.optional else f"schema: required attribute {label} is missing"
        allowed = rule.allowed
        if value is _LAZY_VALUE or (isinstance(value, Reference) and value.data):
            if rule.binding == "eager" and "anyClass" not in allowed:
                return f"schema: attribute {label} must have a value now, not a LAZY reference"
            return None
        if rule.binding == "lazy":
            return f"schema: attribute {label} must be a LAZY reference"
        kind = value_kind(value)
        if "anyClass" in allowed or kind in allowed:
            return None
        return (f"schema: attribute {label} must be {' or '.join(allowed)}, found {kind} "
                f"{_short(value)}")

    # ================================================================ type phase
    def type_phase(self) -> None:
        self._resolve_types(self.root)

    def _resolve_types(self, cd: ComponentDescription) -> None:
        if cd.state == _DONE:
            return
        if cd.state == _LIVE:
            raise CyclicReference(
                f"cyclic prototype: {display_path(cd)} extends itself, directly or through its prototypes",
                at=cd.location, hint="a component cannot extend a prototype that contains or extends it")
        cd.state = _LIVE
        if cd.prototypes:
            self._merge_prototypes(cd)
        cd.prototypes = None
        for value in list(cd.values_raw()):
            if type(value) is ComponentDescription and value.state != _DONE:  # (copies of resolved ones are)
                self._resolve_types(value)
        cd.state = _DONE
        constructor = cd.raw_get("phase.function")
        if self.share_schemas and isinstance(constructor, str) and \
                _names.CONSTRUCTORS.get(constructor) == _names.CONSTRUCT_SCHEMA and _is_literal_tree(cd):
            cd.frozen = True

    def _merge_prototypes(self, cd: ComponentDescription) -> None:
        prototypes = cd.prototypes or []
        cd.prototypes = None
        targets: list[ComponentDescription] = []
        for prototype in reversed(prototypes):
            if isinstance(prototype, ComponentDescription):
                self._subtype(cd, prototype, copy=False)
                continue
            assert isinstance(prototype, Reference)
            try:
                target = self._type_walk(prototype, cd)
            except _Unresolved as failure:
                raise TypeResolutionError(f"prototype {prototype.path_text()!r} not found: {failure.message}",
                                          at=prototype.location or cd.location, hint=failure.hint) from None
            except _Lazy:
                raise TypeResolutionError(f"prototype {prototype.path_text()!r} is a LAZY reference",
                                          at=prototype.location or cd.location,
                                          hint="extends needs a component description") from None
            if not isinstance(target, ComponentDescription):
                raise TypeResolutionError(
                    f"prototype {prototype.path_text()!r} is a {value_kind(target)}, not a component description",
                    at=prototype.location or cd.location,
                    hint="a name in an extends list must denote a component description (extends { … })")
            if target is cd or target.is_ancestor_of(cd):
                raise CyclicReference(f"cyclic prototype: {display_path(cd)} extends {prototype.path_text()!r}, "
                                      "which contains it", at=prototype.location or cd.location,
                                      hint="a component cannot extend a prototype that contains it")
            self._resolve_types(target)
            targets.append(target)
            self._subtype(cd, target, copy=True)
        # What the prototypes define matters only to an sfOverride tag (rare): worked out only then.
        # (A resolved prototype's keys no longer change during the type phase.)
        if any(target.raw_keys_set() for target in targets) and \
                any("sfOverride" in tags for tags in cd.raw_tags_mapping().values()):
            inherited = {key for target in targets for key in target.raw_keys()}
            for key in cd.raw_keys():
                if "sfOverride" in cd.raw_tags(key) and key not in inherited:
                    raise TypeResolutionError(
                        f"attribute {key!r} is tagged sfOverride but none of the prototypes of "
                        f"{display_path(cd)} defines it", at=cd.locations.get(key, cd.location),
                        hint=close_match_hint(str(key), [k for k in inherited if isinstance(k, str)],
                                              otherwise="remove the sfOverride tag, or fix the name"))

    def _subtype(self, cd: ComponentDescription, prototype: ComponentDescription, *, copy: bool) -> None:
        # The prototype's attributes, then cd's own: an override keeps the prototype's position and
        # adds its tags to the prototype's. Built as plain dicts: this runs for every component.
        attributes = dict(prototype._attributes)
        if copy:
            for key, value in prototype._attributes.items():
                if type(value) is ComponentDescription:
                    if not value.frozen:  # (a frozen one is shared: copy_value, inline)
                        attributes[key] = value.thaw(cd)
                elif type(value) not in _KEPT_AS_IS:
                    attributes[key] = copy_value(value, cd)
        tags = dict(prototype._tags)
        locations = dict(prototype.locations)
        own_tags = cd._tags
        own_locations = cd.locations
        for key, value in cd._attributes.items():
            key_tags = own_tags.get(key, _NO_TAGS)
            if key in attributes:
                inherited_tags = tags.get(key, _NO_TAGS)
                if "sfFinal" in inherited_tags:
                    raise FinalAttributeOverridden(
                        f"attribute {key!r} is tagged sfFinal and may not be overridden in {display_path(cd)}",
                        at=own_locations.get(key, cd.location),
                        hint=f"remove the override of {key!r}, or the sfFinal tag in the prototype")
                key_tags = inherited_tags | key_tags
            attributes[key] = value
            if key_tags:
                tags[key] = key_tags
            else:
                tags.pop(key, None)
            location = own_locations.get(key)
            if location is not None:
                locations[key] = location
        cd.adopt_attributes(attributes, tags, locations)
        if prototype.holds_placements:
            cd.mark_placements()  # the prototype's own not-yet-placed attributes are cd's now

    def _type_walk(self, reference: Reference, cd: ComponentDescription) -> object:
        # Prototype references may pass through components whose own prototypes are not merged yet.
        self._type_mode = True
        try:
            return self.resolve(reference, cd)
        finally:
            self._type_mode = False

    # ================================================================ place phase
    def place_phase(self) -> None:
        if not self.has_placements:
            return
        while True:
            pending: list[tuple[ComponentDescription, PlacementSlot, str]] = []
            progress = self._place_in(self.root, pending)
            if not pending:
                return
            if not progress:
                cd, slot, message = pending[0]
                others = f" (and {len(pending) - 1} more)" if len(pending) > 1 else ""
                raise PlacementError(f"cannot place {':'.join(slot.parts)!r}: {message}{others}",
                                     at=slot.location or cd.location,
                                     hint="the part before the last ':' must name an existing component "
                                          "description of the component where the line is written")

    def _place_in(self, cd: ComponentDescription, pending: list[tuple[ComponentDescription, PlacementSlot, str]]
                  ) -> bool:
        progress = False
        attributes = cd._attributes  # (read directly: this visits every description of the tree)
        for key, value in list(attributes.items()):
            if type(key) is PlacementSlot:
                if key not in attributes:
                    continue
                message = self._place(cd, key, value)
                if message is None:
                    progress = True
                    if type(value) is ComponentDescription:
                        self._place_in(value, pending)
                else:
                    pending.append((cd, key, message))
            elif type(value) is ComponentDescription and not value.frozen and attributes.get(key) is value and \
                    (value.holds_placements or not self.placements_marked):
                progress = self._place_in(value, pending) or progress
        return progress

    def _place(self, cd: ComponentDescription, slot: PlacementSlot, value: object) -> str | None:
        from sd_actors.descriptions._model import RefPart

        thaw_path(cd, slot.parts[:-1])
        prefix = Reference(tuple(RefPart(HERE, p) for p in slot.parts[:-1]), location=slot.location)
        try:
            target = self.resolve(prefix, cd)
        except (_Unresolved, _Lazy) as failure:
            return failure.message if isinstance(failure, _Unresolved) else "it passes through a LAZY reference"
        if not isinstance(target, ComponentDescription):
            kind = value_kind(target)
            article = "an" if kind[0] in "AEIOU" else "a"
            raise PlacementError(f"cannot place {':'.join(slot.parts)!r}: {':'.join(slot.parts[:-1])} is "
                                 f"{article} {kind}, not a component description", at=slot.location,
                                 hint="attributes can only be placed into component descriptions")
        name = slot.parts[-1]
        if name in target and "sfFinal" in target.tags(name):
            raise FinalAttributeOverridden(f"attribute {name!r} is tagged sfFinal and may not be overridden by "
                                           f"placement into {display_path(target)}", at=slot.location,
                                           hint="remove the placement or the sfFinal tag")
        if isinstance(value, ComponentDescription) and value.is_ancestor_of(target):
            raise PlacementError(f"cannot place {':'.join(slot.parts)!r} inside itself", at=slot.location)
        tags = cd.raw_tags(slot) | (target.tags(name) if name in target else frozenset())
        cd.remove(slot)
        target.set(name, value, tags=tags, location=slot.location)
        return None

    # ================================================================ function phase
    def function_phase(self, cd: ComponentDescription | None = None) -> None:
        node = self.root if cd is None else cd
        # Constructing replaces values, never adds or removes keys: the mapping itself is iterated.
        for key, value in node._attributes.items():
            if type(value) is ComponentDescription:
                if value.frozen:
                    shared = self._constructed.get(id(value))
                    if shared is not None:
                        node.replace_value(key, shared)
                        continue
                self.function_phase(value)
                constructor = value._attributes.get("phase.function")
                if constructor is not None:
                    constructed = self._construct(value, constructor, node, key)
                    if value.frozen:
                        self._constructed[id(value)] = constructed
                    node.replace_value(key, constructed)
            elif type(value) is Apply:
                self.function_phase(value.body)

    def _construct(self, cd: ComponentDescription, constructor: object, parent: ComponentDescription,
                   key: object) -> Apply:
        """Turn a function, schema or assertions description into its APPLY/ASSERT, reusing ``cd``."""
        kind = _names.CONSTRUCTORS.get(constructor) if isinstance(constructor, str) else None
        if kind is None:
            raise FunctionError(f"unknown phase.function {constructor!r} in {display_path(parent, key)}",
                                at=cd.location, hint="use sd_actors.descriptions.ConstructFunction, "
                                "ConstructSchema or ConstructAssertions")
        cd.remove("phase.function")
        if kind == _names.CONSTRUCT_FUNCTION:
            attributes = cd._attributes  # (read directly: there is one of these per function of the tree)
            if attributes.get("sfFunctionClass") is None:
                raise FunctionError(f"{display_path(parent, key)}: a function needs sfFunctionClass",
                                    at=cd.location, hint="extend one of the function templates (sum, concat, …)")
            if next(iter(attributes)) != "sfFunctionClass":
                cd.move_to_front("sfFunctionClass")
            return Apply("APPLY", cd, lazy=attributes.get("sfFunctionLazy") is True, location=cd.location)
        if kind == _names.CONSTRUCT_ASSERTIONS:
            cd.set("sfFunctionClass", _names.function("CheckAssertions"))
            cd.move_to_front("sfFunctionClass")
            return Apply("ASSERT", cd, location=cd.location)
        phase = cd.raw_get("sfAssertionPhase")
        for setting in ("sfAssertionPhase", "sfSchemaDescription"):
            if setting in cd:
                cd.remove(setting)
        for name, value in cd.raw_items():
            if type(value) is not Apply or value.kind != "APPLY":
                raise FunctionError(
                    f"schema element {name!r} of {display_path(parent, key)} must extend a schema entry "
                    f"(Integer, String, Optional…), found {value_kind(value)}",
                    at=cd.locations.get(name, cd.location), hint=f"write {name} extends String; or similar")
            value.body.set("name", name)
        cd.set("sfFunctionClass", _names.function("CheckAssertions"))
        cd.set("sfAssertionPhase", phase if isinstance(phase, str) else "dynamic")
        return Apply("ASSERT", cd, location=cd.location)

    # ================================================================ user phases
    def user_phase(self, name: str, cd: ComponentDescription | None = None) -> None:
        node = self.root if cd is None else cd
        for value in list(node.values_raw()):
            if isinstance(value, ComponentDescription):
                self.user_phase(name, value)
        for key in list(node.raw_keys()):
            if isinstance(key, str) and key.startswith(f"phase.{name}"):
                target = node.raw_get(key)
                action = _load_phase_action(target, key, node)
                try:
                    action(node)
                except DescriptionError:
                    raise
                except Exception as error:  # a user's phase action may fail in any way
                    raise UserPhaseError(f"{key} ({target}) failed on {display_path(node)}: {error}",
                                         at=node.locations.get(key, node.location)) from error

    # ================================================================ link phase
    def link_phase(self, config: ComponentDescription) -> None:
        self._link(config)
        if self.errors:
            first = self.errors[0]
            if len(self.errors) > 1:
                rest = "; ".join(e.message for e in self.errors[1:6])
                more = f" (and {len(self.errors) - 6} more)" if len(self.errors) > 6 else ""
                raise type(first)(f"{first.message}; also: {rest}{more}", at=first.location,
                                  source_line=first.source_line, hint=first.hint)
            raise first

    def _link(self, cd: ComponentDescription) -> None:
        if cd.state == _DONE + 1:
            return
        if id(cd) in self._link_live:
            raise CyclicReference(f"cyclic reference: {display_path(cd)} would contain itself",
                                  at=cd.location, hint="a link to a component that contains the link makes an "
                                  "infinite tree; use LAZY to point at the running component instead")
        self._link_live.add(id(cd))
        try:
            assertions: list[str] = []
            attributes = cd._attributes
            for key, value in list(attributes.items()):
                kind = type(value)
                if kind in _PLAIN or type(key) is not str:
                    continue
                value = attributes.get(key, _MISSING)
                # A LAZY link or function stays as it is (resolved at run time); assertions come last.
                if type(value) is ComponentDescription:
                    self._link(value)
                elif type(value) is Reference:
                    if not value.lazy or value.data:
                        self._link_attribute(cd, key, value)
                elif type(value) is Apply:
                    if value.lazy:
                        continue
                    if value.kind == "ASSERT":
                        assertions.append(key)
                    else:
                        self._link_attribute(cd, key, value)
                elif value is TBD:
                    self._link_attribute(cd, key, value)
            for key in assertions:
                self._link_attribute(cd, key, cd.raw_get(key))
        finally:
            self._link_live.discard(id(cd))
        cd.state = _DONE + 1

    def _link_attribute(self, cd: ComponentDescription, key: str, value: object) -> None:
        try:
            result = self.value_of(cd, key)
        except _Lazy:
            if isinstance(value, Reference):
                cd.replace_value(key, value.with_flags(lazy=True))
            elif isinstance(value, Apply):
                value.lazy = True
            return
        except _Unresolved as failure:
            self.errors.append(failure.error(failure.message, at=failure.at or _location_of(cd, key),
                                             hint=failure.hint))
            return
        except RecursionError:
            raise NestingTooDeep(f"{display_path(cd, key)}: links, functions or prototypes depend on each other "
                                 "more than about 150 levels deep", at=_location_of(cd, key),
                                 hint="shorten the chain: let the ends refer to each other directly") from None
        if isinstance(result, ComponentDescription):
            self._check_containment(cd, key, result)
            if result.parent is None:
                result.parent = cd
            cd.replace_value_shared(key, result)
            self._link(result)
        elif isinstance(result, list):
            cd.replace_value(key, [copy_value(item, cd) for item in result])
        else:
            cd.replace_value(key, result)

    def _check_containment(self, cd: ComponentDescription, key: str, target: ComponentDescription) -> None:
        if target.is_ancestor_of(cd):
            raise CyclicReference(f"cyclic reference: {display_path(cd, key)} links to {display_path(target)}, "
                                  "which contains it", at=_location_of(cd, key),
                                  hint="use LAZY to refer to the running component instead of copying it")


class _Missing:
    """The type of _MISSING, which no attribute value has."""


_MISSING: Final = _Missing()
# Values that copies share (finish() and extends copy only descriptions, functions and vectors).
_KEPT_AS_IS: Final = frozenset({str, int, float, bool, type(None), bytes, Long, Double, Reference, type(TBD)})


def _is_lazy(value: object) -> bool:
    """A LAZY reference or function: value_of raises _Lazy for it (checked first where that is common)."""
    if type(value) is Reference:
        return value.lazy and not value.data
    return type(value) is Apply and value.lazy


_NO_TAGS: Final[frozenset[str]] = frozenset()
# The kinds of the plain Python types (as value_kind names them).
_KIND_OF_TYPE: Final[Mapping[type, str]] = {
    bool: "Boolean", Long: "Long", int: "Integer", Double: "Double", float: "Float", str: "String",
    type(None): "Null", list: "Vector", bytes: "ByteArray", ComponentDescription: "CD",
}
# Values the link phase has nothing to do with.
_PLAIN: Final = frozenset({str, int, float, bool, type(None), list, bytes, Long, Double})

def _module_call(module: str, function: str) -> Callable[[], str]:
    """``module.function()``, the module imported at the first call: few descriptions read these,
    and importing platform, getpass and tempfile cost every command line 3 ms."""
    return lambda: str(getattr(importlib.import_module(module), function)())


# Properties every SmartFrog JVM had, read from the machine when -D does not set them.
STANDARD_PROPERTIES: Final[Mapping[str, Callable[[], str]]] = {
    "user.name": _module_call("getpass", "getuser"),
    "user.home": lambda: str(Path.home()),
    "user.dir": lambda: os.getcwd(),
    "os.name": _module_call("platform", "system"),
    "os.arch": _module_call("platform", "machine"),
    "os.version": _module_call("platform", "release"),
    "file.separator": lambda: os.sep,
    "path.separator": lambda: os.pathsep,
    "line.separator": lambda: os.linesep,
    "java.io.tmpdir": _module_call("tempfile", "gettempdir"),
}


def _python_constant(name: str) -> object:
    """``CONSTANT "package.module.NAME"``: a module-level constant of an importable Python module."""
    module_name, _, attribute = name.rpartition(".")
    # Only modules already loaded: resolving a description must never import (run) code.
    module = sys.modules.get(module_name)
    if module is None or not attribute:
        return _MISSING
    value = getattr(module, attribute, _MISSING)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return _MISSING
_LAZY_VALUE: Final = object()


def _class_names(classes: object) -> list[str]:
    names = classes if isinstance(classes, list) else [classes]
    result: list[str] = []
    for name in names:
        if isinstance(name, str):
            result.append(_names.JAVA_VALUE_CLASSES.get(name, name))
    return result


def _short(value: object) -> str:
    from sd_actors.descriptions._printer import format_value

    text = format_value(value)
    return text if len(text) <= 40 else text[:37] + "..."


def thaw_path(cd: ComponentDescription, names: tuple[str, ...] | list[str]) -> None:
    """Give ``cd`` private copies of the shared (frozen) descriptions along ``names``, before a change."""
    node = cd
    for name in names:
        value = node.raw_get(name)
        if not isinstance(value, ComponentDescription):
            return
        if value.frozen:
            value = value.thaw(node)
            node.replace_value(name, value)
        node = value


def _is_literal_tree(cd: ComponentDescription) -> bool:
    """Only literals, literal function applications and nested such descriptions: safe to share."""
    if cd.prototypes:
        return False
    for key, value in cd.raw_items():
        if type(key) is not str or not _is_literal_value(value):
            return False
    function = cd.raw_get("sfFunctionClass")
    if isinstance(function, str) and cd.raw_get("phase.function") is not None:
        canonical = _names.canonical_function(function)
        if canonical in _IMPURE_FUNCTIONS:
            return False
    return True


def _is_literal_value(value: object) -> bool:
    kind = type(value)
    if kind is ComponentDescription:
        return _is_literal_tree(value)  # type: ignore[arg-type]
    if kind is list:
        return all(_is_literal_value(item) for item in value)  # type: ignore[attr-defined]
    return kind is not Reference and kind is not Apply


_IMPURE_FUNCTIONS: Final = frozenset(_names.function(n) for n in ("Next", "Random", "Date", "UserInput", "Ref"))


def _tbd_location(cd: ComponentDescription, key: str) -> SourceLocation | None:
    """Where to point for a TBD: the component that still needs the value, in the user's file."""
    declared = cd.locations.get(key)
    if cd.location is not None and (declared is None or declared.path != cd.location.path):
        return cd.location
    return declared or cd.location


def _tbd_hint(cd: ComponentDescription, key: object) -> str:
    names = cd.path()
    if names and names[0] == "sfConfig":
        names = names[1:]
    path = ":".join([*names, str(key)])
    return f"give it a value in the description, or with --set {path}=VALUE"


def _visible_names(cd: ComponentDescription) -> Iterator[str]:
    node: ComponentDescription | None = cd
    while node is not None:
        yield from node.keys()
        node = node.parent


def _load_phase_action(target: object, key: str, cd: ComponentDescription) -> Callable[[ComponentDescription], None]:
    if not isinstance(target, str) or not target:
        raise UserPhaseError(f"{key} must name a Python callable as 'package.module:function'",
                             at=cd.locations.get(key, cd.location))
    module_name, _, attribute = target.partition(":")
    if not attribute:
        module_name, _, attribute = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        action = getattr(module, attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise UserPhaseError(f"{key}: cannot load {target!r}: {error}", at=cd.locations.get(key, cd.location),
                             hint="user phases are Python callables taking the component description, named "
                                  "'package.module:function'") from None
    if not callable(action):
        raise UserPhaseError(f"{key}: {target!r} is not callable", at=cd.locations.get(key, cd.location))
    return action  # type: ignore[no-any-return]


@contextmanager
def phase_errors(phase: str) -> Iterator[None]:
    """Tag every DescriptionError raised inside with the phase it happened in."""
    try:
        yield
    except DescriptionError as error:
        if error.phase == "raw" or phase in ("type", "place", "function", "sfConfig"):
            error.phase = phase
        raise


def select_sfconfig(root: ComponentDescription) -> ComponentDescription:
    if "sfConfig" not in root:
        raise SfConfigError("the description has no sfConfig", at=root.location,
                            hint="sfConfig is the component to deploy: add 'sfConfig extends Compound { … }'")
    config = root["sfConfig"]
    if not isinstance(config, ComponentDescription):
        raise SfConfigError(f"sfConfig must be a component description, found {value_kind(config)}",
                            at=root.locations.get("sfConfig", root.location),
                            hint="write 'sfConfig extends { … }'")
    return config


def finish(cd: ComponentDescription, parent: ComponentDescription | None, live: set[int] | None = None
           ) -> ComponentDescription:
    """SmartFrog's sfAsComponentDescription: drop sfTemp and checked assertions, unshare copies."""
    live = set() if live is None else live
    if id(cd) in live:
        raise CyclicReference(f"cyclic reference: {display_path(cd)} contains itself through links",
                              at=cd.location, hint="use LAZY to refer to a component instead of copying it")
    live.add(id(cd))
    result = ComponentDescription(parent, eager=cd.eager, location=cd.location)
    # Copied whole, then trimmed: this runs for every component of the result, and most values
    # are kept as they are. Locations and tags are only of the kept keys, tags only non-empty.
    source = cd.raw_keys_set()
    attributes = dict(source)
    tags = dict(cd.raw_tags_mapping())
    locations = dict(cd.locations)
    dropped = {key for key, key_tags in tags.items() if "sfTemp" in key_tags}
    for key, value in source.items():
        kind = type(value)
        if kind in _KEPT_AS_IS and type(key) is str:
            continue
        if type(key) is not str or value is _CHECKED:
            dropped.add(key)
        elif key not in dropped and (kind is ComponentDescription or kind is Apply or kind is list):
            attributes[key] = _finish_value(value, result, live)
    for key in dropped:
        del attributes[key]
        tags.pop(key, None)
        locations.pop(key, None)
    result.adopt_attributes(attributes, tags, locations, reparent=False)
    live.discard(id(cd))
    return result


def _finish_value(value: object, parent: ComponentDescription, live: set[int]) -> object:
    if isinstance(value, ComponentDescription):
        return finish(value, parent, live)
    if isinstance(value, Apply):
        return Apply(value.kind, finish(value.body, parent, live), lazy=value.lazy, location=value.location)
    if isinstance(value, list):
        return [_finish_value(item, parent, live) for item in value]
    return value
