"""The web console: a daemon's applications as live component trees, and a form to launch templates.

Every ``sd-actors`` command loads this package's plugin (it contributes ``sd-actors console``), so
the names below are imported on first use: aiohttp costs about 0.15 s, paid only by a console.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from sd_actors.actors.console._access import AccessPolicy
    from sd_actors.actors.console._plugin import open_daemon_console
    from sd_actors.actors.console._server import (
        Console,
        ConsoleError,
        ConsoleSettings,
        RunningConsole,
        default_template_folders,
        open_console,
        parse_bind,
    )
    from sd_actors.actors.console._templates import Template, TemplateError, TemplateField, list_templates

_MODULE_OF: Final = {
    "AccessPolicy": "_access",
    "Console": "_server",
    "ConsoleError": "_server",
    "ConsoleSettings": "_server",
    "RunningConsole": "_server",
    "Template": "_templates",
    "TemplateError": "_templates",
    "TemplateField": "_templates",
    "default_template_folders": "_server",
    "list_templates": "_templates",
    "open_console": "_server",
    "open_daemon_console": "_plugin",
    "parse_bind": "_server",
}

__all__ = [
    "AccessPolicy",
    "Console",
    "ConsoleError",
    "ConsoleSettings",
    "RunningConsole",
    "Template",
    "TemplateError",
    "TemplateField",
    "default_template_folders",
    "list_templates",
    "open_console",
    "open_daemon_console",
    "parse_bind",
]


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
