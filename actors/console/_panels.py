"""The plugins' panels for the component the page shows, computed from what the daemon answered."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sd_actors.net._protocol import ComponentDetails
from sd_actors.plugins import ComponentView, ConsolePanel

logger = logging.getLogger(__name__)


def component_view(details: ComponentDetails) -> ComponentView:
    status = details.status
    record = status.record
    return ComponentView(
        path=tuple(status.path), component_class=status.component_class, state=status.state, host=status.host,
        attributes={attribute.name: attribute.value for attribute in details.attributes},
        record=None if record is None else {"kind": record.kind, "description": record.description,
                                            "path": tuple(record.path), "cause": record.cause})


def panels_json(panels: Sequence[ConsolePanel], details: ComponentDetails) -> list[dict[str, object]]:
    """``[{"title", "rows": [[label, text], …], "error"}]`` for the panels that apply to the component.

    A panel that raises, or whose rows are not (label, text) pairs, is shown with its error instead
    of its rows: a plugin's mistake never breaks the page.
    """
    view = component_view(details)
    shown: list[dict[str, object]] = []
    for panel in panels:
        try:
            if not panel.applies_to(view):
                continue
            rows = list(panel.rows(view))
            for row in rows:
                if not (isinstance(row, tuple | list) and len(row) == 2 and all(isinstance(cell, str) for cell in row)):
                    raise TypeError(f"rows must be (label, text) pairs of strings, not {row!r}")
        except Exception as error:  # a plugin's error is shown in its panel's place
            logger.warning("console panel %r for %s failed", panel.title, ":".join(view.path), exc_info=True)
            shown.append({"title": panel.title, "rows": [], "error": f"{type(error).__name__}: {error}"})
            continue
        shown.append({"title": panel.title, "rows": [list(row) for row in rows], "error": ""})
    return shown
