"""Talking to a daemon from a command a plugin contributes (see ``sd_actors_cli_commands``)."""

from sd_actors.actors._client_commands import CommandError, connect
from sd_actors.actors._client_commands import _request as request

__all__ = ["CommandError", "connect", "request"]
