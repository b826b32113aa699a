"""From a file to its resolved ``sfConfig``: parse, then run the phases of ``phaseList``."""

from __future__ import annotations

import gc
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sd_actors.descriptions._errors import DescriptionError, NestingTooDeep, PlacementError, SourceLocation
from sd_actors.descriptions._lexer import SourceText, tokenize
from sd_actors.descriptions._model import ComponentDescription
from sd_actors.descriptions._parser import ParseContext, _Parser, parse_path, parse_text
from sd_actors.descriptions._resolver import (
    DEFAULT_PHASES,
    Resolver,
    display_path,
    finish,
    phase_errors,
    select_sfconfig,
    thaw_path,
)

PhaseObserver = Callable[[str, ComponentDescription], None]


def parse_file(
    path: str | Path,
    *,
    include_dirs: Sequence[str | Path] = (),
    properties: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    use_library: bool = True,
    observe: PhaseObserver | None = None,
) -> ComponentDescription:
    """Parse and resolve a description file; return its ``sfConfig``.

    :param include_dirs: folders searched for ``#include`` after the including file's own folder
        (the component library shipped with sd-actors is searched last).
    :param properties: values of ``PROPERTY``/``IPROPERTY`` references (``-D name=value``).
    :param overrides: ``--set path=value``: attribute paths relative to ``sfConfig`` and their
        values in SmartFrog notation (a literal; anything else is taken as a string).
    :param observe: called with each phase's name and the tree after it (``--phases``).
    :raises DescriptionError: anything wrong with the description, with file, line and a hint.
    """
    path = Path(path)
    context = ParseContext(include_dirs=tuple(Path(d) for d in include_dirs), use_library=use_library)
    try:
        text_path = path if path.is_file() else None
    except OSError:
        text_path = None
    if text_path is None:
        raise DescriptionError(f"{path}: no such description file", hint="check the path")
    return _guarded(lambda: _resolve(parse_path(path, context), properties, overrides, environment, observe,
                                     has_placements=context.placements > 0))


def parse_string(
    text: str,
    *,
    filename: str = "<string>",
    include_dirs: Sequence[str | Path] = (),
    properties: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
    environment: Mapping[str, str] | None = None,
    use_library: bool = True,
    observe: PhaseObserver | None = None,
) -> ComponentDescription:
    """Like :func:`parse_file`, for a description held in a string."""
    context = ParseContext(include_dirs=tuple(Path(d) for d in include_dirs), use_library=use_library)
    try:
        return _guarded(lambda: _resolve(parse_text(text, filename, context), properties, overrides, environment,
                                         observe, has_placements=context.placements > 0))
    except DescriptionError as error:
        # Errors found after parsing carry only a location; a file's line is read back from disk,
        # a string's line from the string.
        location = error.location
        if error.source_line is None and location is not None and location.path == filename:
            lines = text.splitlines()
            if 0 < location.line <= len(lines):
                error.attach_source_line(lines[location.line - 1])
        raise


def parse_root(
    path: str | Path,
    *,
    include_dirs: Sequence[str | Path] = (),
    use_library: bool = True,
    phases: Sequence[str] = ("type", "place", "function"),
) -> ComponentDescription:
    """The whole file (not just ``sfConfig``) after the given phases: for templates and include files."""
    context = ParseContext(include_dirs=tuple(Path(d) for d in include_dirs), use_library=use_library)

    def run() -> ComponentDescription:
        root = parse_path(Path(path), context)
        resolver = Resolver(root, properties={})
        for phase in phases:
            with phase_errors(phase):
                _run_phase(resolver, phase, root)
        return root

    return _guarded(run)


def _guarded(run: Callable[[], ComponentDescription]) -> ComponentDescription:
    # A description is a large graph of small objects with parent links (cycles): the cyclic
    # garbage collector would rescan it again and again while it grows, which tripled the time
    # of a 10,000-component parse. Nothing made here is garbage until the parse ends.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return run()
    except RecursionError:
        raise NestingTooDeep("the description is nested or chained too deeply to resolve (links, prototypes "
                             "or functions that depend on each other more than about 150 levels deep)",
                             hint="shorten the chain: let the ends refer to each other directly") from None
    finally:
        if collecting:
            gc.enable()


def _resolve(
    root: ComponentDescription,
    properties: Mapping[str, str] | None,
    overrides: Mapping[str, str] | None,
    environment: Mapping[str, str] | None,
    observe: PhaseObserver | None,
    *,
    has_placements: bool,
) -> ComponentDescription:
    phases = list(DEFAULT_PHASES)
    if "phaseList" in root:
        phase_list = root["phaseList"]
        if not isinstance(phase_list, list) or not all(isinstance(p, str) for p in phase_list):
            raise DescriptionError("phaseList must be a vector of phase names",
                                   at=root.locations.get("phaseList", root.location),
                                   hint='write phaseList [| "type", "place", "function", "sfConfig", "link" |];')
        phases = [str(p) for p in phase_list]
        root.remove("phaseList")
    resolver = Resolver(root, properties=properties or {}, environment=environment)
    resolver.has_placements = has_placements
    resolver.share_schemas = all(p in DEFAULT_PHASES or p == "print" for p in phases)
    resolver.placements_marked = resolver.share_schemas
    current = root
    overrides_applied = not overrides
    for phase in phases:
        if phase in ("sfConfig", "link") and not overrides_applied:
            _apply_overrides(root, overrides or {})
            overrides_applied = True
        with phase_errors(phase):
            current = _run_phase(resolver, phase, current)
        if observe is not None:
            observe(phase, current)
    if not overrides_applied:
        _apply_overrides(root, overrides or {})
    if current is root:
        current = select_sfconfig(root)
    return finish(current, None)


def _run_phase(resolver: Resolver, phase: str, current: ComponentDescription) -> ComponentDescription:
    if phase == "type":
        resolver.type_phase()
    elif phase == "place":
        resolver.place_phase()
    elif phase == "function":
        resolver.function_phase()
    elif phase == "sfConfig":
        return select_sfconfig(resolver.root)
    elif phase == "link":
        resolver.link_phase(current)
    elif phase == "print":
        pass
    else:
        resolver.user_phase(phase, current)
    return current


def _apply_overrides(root: ComponentDescription, overrides: Mapping[str, str]) -> None:
    """``--set a:b=value``: put ``value`` at ``sfConfig:a:b`` (the last component must exist)."""
    for path, text in overrides.items():
        names = [n for n in path.split(":") if n]
        if names and names[0] == "sfConfig":
            names = names[1:]
        if not names:
            raise PlacementError(f"--set {path}={text}: the path names no attribute",
                                 hint="write --set component:attribute=value (relative to sfConfig)")
        target = root.get("sfConfig")
        if isinstance(target, ComponentDescription):
            thaw_path(target, names[:-1])
        for name in names[:-1]:
            if not isinstance(target, ComponentDescription) or not isinstance(target.get(name),
                                                                                ComponentDescription):
                where = display_path(target) if isinstance(target, ComponentDescription) else "sfConfig"
                raise PlacementError(f"--set {path}={text}: {where} has no component {name!r}",
                                     hint="the path is relative to sfConfig: component:attribute")
            target = target[name]
        if not isinstance(target, ComponentDescription):
            raise PlacementError(f"--set {path}={text}: the description has no sfConfig component",
                                 hint="add sfConfig extends { … }")
        target.set(names[-1], parse_literal(text), location=SourceLocation("--set", 1, 1))


def parse_literal(text: str) -> object:
    """A command-line value: a SmartFrog literal if it is one (``42``, ``"x"``, ``true``), else the text."""
    source = SourceText(text, "<command line>")
    try:
        parser = _Parser(source, tokenize(source), ParseContext(use_library=False))
        if parser.peek().kind not in ("string", "number", "true", "false", "NULL", "[|", "bytes"):
            return text
        value = parser.parse_primitive(ComponentDescription(None))
        if parser.peek().kind != "eof":
            return text
        return value
    except DescriptionError:
        return text
