"""The hooks of sd-actors: the plugin author's manual.

A plugin is any object or module with functions marked ``@hookimpl`` whose names match the
specifications below. Third-party plugins register through the entry-point group ``sd_actors``
(``[project.entry-points.sd_actors] myplugin = "mypackage.plugin"``); sd-actors' own components and
policies are registered exactly the same way.

Two kinds of hooks:

* contributions (every plugin's answer is collected): component types, CLI commands, web console
  panels;
* decisions (``firstresult``: the first plugin that does not return ``None`` decides): what a
  parent does when a child terminated, which host runs a component a Scheduler places, where an
  HARestarter moves a part whose host is gone.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

import pluggy

if TYPE_CHECKING:
    from sd_actors.actors import Component, ComponentRef, Reaction, TerminationRecord

PROJECT: Final = "sd_actors"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    """Contribute component types: the Python class behind each ``sfClass`` name.

    Called once when a System is opened. Every plugin's mapping is merged; a name contributed
    twice is an error at that moment (naming both plugins).

    :returns: a mapping from ``sfClass`` names (dotted, e.g. ``"mycompany.components.Web"``; also
        aliases such as SmartFrog's Java class names) to subclasses of
        :class:`sd_actors.actors.Component`.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def sd_actors_child_terminated(
    parent: ComponentRef, child: ComponentRef, record: TerminationRecord
) -> Reaction | None:
    """Decide what ``parent`` does now that ``child`` terminated or failed.

    Called in the parent's actor thread, after the child has finished terminating (a child that
    failed a liveness check has been terminated first). The first plugin that returns a
    :class:`~sd_actors.actors.Reaction` decides; sd-actors' own implementation runs last and asks
    the parent component (``Component.child_terminated``): SmartFrog's shared fate for a
    Compound, OTP's strategies for a Supervisor, the workflow semantics for Sequence, Parallel, ….

    :param parent: the parent component (its ``component`` attribute is the Python object).
    :param child: the child that terminated; it is no longer among ``parent.children``.
    :param record: why the child terminated: kind (normal, abnormal, …), description, the path
        of the component the termination started from, cause.
    :returns: ``Reaction.TERMINATE`` (the parent terminates with ``record``),
        ``Reaction.CONTINUE`` (the parent carries on), ``Reaction.HANDLED`` (the plugin already
        acted, e.g. restarted the child somewhere), or ``None`` to let the next plugin decide.
    """
    raise NotImplementedError


@hookspec
def sd_actors_cli_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    client_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Contribute ``sd-actors`` sub-commands.

    Called once each time the command line is built, after sd-actors' own commands were added.
    Add a parser with ``commands.add_parser(NAME, help=...)`` and give it a ``run`` default:
    ``parser.set_defaults(run=function)`` where ``function(arguments, out) -> int`` receives the
    parsed :class:`argparse.Namespace` and the text stream to print to, and returns the exit
    status. A command that talks to a daemon calls ``client_options(parser)`` to accept the same
    ``--host``, ``--state-dir``, ``--server-key``, ``--insecure`` and ``--timeout`` options as
    ``status``, and ``sd_actors.actors.client.connect(arguments, out)`` (a context manager) to open the connection
    and ``sd_actors.actors.client.request(client, message)`` to ask it. A name
    already taken is an error raised by argparse when the second plugin adds it.

    :param commands: the sub-parsers of ``sd-actors``.
    :param client_options: adds the daemon-connection options to a parser.
    :returns: ``None``; the contribution is the parsers added.
    """
    raise NotImplementedError


if TYPE_CHECKING:  # the placement types belong to the policies that use them
    from collections.abc import Sequence

    from sd_actors.policies import HostCapacity, PlacementRequest


@hookspec(firstresult=True)
def sd_actors_place(component: PlacementRequest, hosts: Sequence[HostCapacity], policy: str) -> HostCapacity | None:
    """Choose the host that runs ``component``, among the hosts it fits on.

    Called by a ``Scheduler`` for each child of a ``Schedulee`` before the child is created, after
    the filters removed the hosts that are not alive or lack room (free memory, virtual CPUs,
    ``maxVMsPerHost``), so every host offered fits. The chosen host's daemon then reserves the room;
    if another placement took it meanwhile, the hook is called again without that host. The first
    plugin that returns a host decides; sd-actors' own implementation runs last and knows the
    policies ``spread`` (most free memory), ``pack`` (least free memory) and ``fewestVMs``. A plugin
    that brings its own policy answers only when ``policy`` is its name, and ``None`` otherwise.

    :param component: what to place: its complete name, ``memory_mib``, ``vcpus`` and
        ``domain_name``.
    :param hosts: the hosts it fits on (never empty), in the order of the Scheduler's ``hosts``,
        each with its ``memory_mib``, ``vcpus``, what is used or reserved
        (``used_memory_mib``, ``used_vcpus``, ``vms``) and ``free_memory_mib``.
    :param policy: the Scheduler's ``policy`` attribute (``"spread"`` unless the description says).
    :returns: one of ``hosts``, or ``None`` to let the next plugin decide (when none decides, the
        deployment fails saying that no plugin knows ``policy``).
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def sd_actors_evacuate_to(restarter: ComponentRef, path: tuple[str, ...], lost_host: str,
                          candidates: Sequence[str], load: Mapping[str, int]) -> str | None:
    """Choose where a part of a failed child moves when its host is gone.

    Called by an ``HARestarter`` once the pool granted it a restart, for each part of the child
    whose host did not answer (a part a ``Schedulee`` placed is placed again by its Scheduler
    instead, without this hook). The first plugin that returns a host decides; sd-actors' own
    implementation runs last and picks the candidate that runs the fewest of the HARestarter's
    children (the first by address on a tie).

    :param restarter: the ``HARestarter`` component.
    :param path: the complete name of the part that moves.
    :param lost_host: the daemon (endpoint) the part ran on, which no longer answers.
    :param candidates: the daemons believed alive that may take it, as endpoints, sorted; never
        empty.
    :param load: how many of the HARestarter's running children each daemon runs.
    :returns: one of ``candidates``, or ``None`` to let the next plugin decide. A host that is not
        among the candidates is refused (logged) and the default choice is made.
    """
    raise NotImplementedError


if TYPE_CHECKING:  # the panel type belongs to the console that shows it
    from sd_actors.plugins._panels import ConsolePanel


@hookspec
def sd_actors_console_panels() -> Sequence[ConsolePanel]:
    """Contribute panels to the web console: boxes under a component's attribute table.

    Called once when a console starts (``sd-actors console``, ``sd-actors daemon --console``,
    ``DeployManagement``), in the console's process. Each time the page shows a component, every
    panel's ``applies_to(view)`` is asked and the panels that answer true show the
    ``rows(view)``, in the order the plugins contributed them. ``view`` is a
    :class:`sd_actors.plugins.ComponentView`: the component's ``path``, ``component_class``,
    ``state``, ``host``, ``attributes`` (name → value in SmartFrog notation; ``view.text(name)``
    without the quotes) and last termination ``record``, as the console read them from the daemon.
    Both run on a console thread and must not block; one that raises shows its error in its place.

    :returns: a sequence of :class:`sd_actors.plugins.ConsolePanel` (``title``, ``applies_to``,
        ``rows``), possibly empty; anything else stops the console at start, naming the plugin.
    """
    raise NotImplementedError
