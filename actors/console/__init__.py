"""The web console: a daemon's applications as live component trees, and a form to launch templates."""

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
