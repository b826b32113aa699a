"""Console panels: what a plugin adds to the web console's page for the components it knows."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pluggy


@dataclass(frozen=True)
class ComponentView:
    """The component selected in the web console, as the console read it from its daemon.

    ``attributes`` maps each attribute's name to its value in SmartFrog notation (``"vm1"`` with
    its quotes, ``512``, ``LAZY ATTRIB disks``); :meth:`text` gives one without the quotes.
    ``record`` is its last termination record (``kind``, ``description``, ``path``, ``cause``), or
    ``None``.
    """

    path: tuple[str, ...]
    component_class: str
    state: str
    host: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    record: Mapping[str, object] | None = None

    def text(self, name: str, default: str = "") -> str:
        """Attribute ``name`` as plain text (a string literal unquoted), or ``default`` when it is not set."""
        from sd_actors.descriptions import parse_literal

        value = self.attributes.get(name)
        if value is None:
            return default
        literal = parse_literal(value)
        return literal if isinstance(literal, str) else value


@dataclass(frozen=True)
class ConsolePanel:
    """A box the web console shows under the attribute table of each component it ``applies_to``.

    Both functions run in the console's process each time a component is shown; one that raises
    puts its error in the panel's place.
    """

    title: str
    applies_to: Callable[[ComponentView], bool]
    """Whether the panel is shown for this component."""
    rows: Callable[[ComponentView], Sequence[tuple[str, str]]]
    """The panel's lines: (label, text) pairs, shown in this order."""


def collect_console_panels(manager: pluggy.PluginManager) -> tuple[ConsolePanel, ...]:
    """Every plugin's panels, in the order the plugins answer; a wrong answer names its plugin."""
    panels: list[ConsolePanel] = []
    for implementation in manager.hook.sd_actors_console_panels.get_hookimpls():
        contributed = implementation.function()
        if not isinstance(contributed, Sequence) or not all(isinstance(p, ConsolePanel) for p in contributed):
            raise TypeError(f"{implementation.plugin_name}: sd_actors_console_panels must return a sequence of "
                            f"sd_actors.plugins.ConsolePanel, not {contributed!r}")
        panels.extend(contributed)
    return tuple(panels)
