"""An example sd-actors plugin: the "alphabetical" placement policy.

A Scheduler whose ``policy`` is ``"alphabetical"`` fills its hosts in the order of their names:
each machine goes to the first host, by name, that has room for it. ``AlphabeticalScheduler`` is
a Scheduler that always places that way. sd-actors finds this module
through the entry point in ``pyproject.toml``; ``plugins/README.md`` walks through writing it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sd_actors.actors import Component
from sd_actors.plugins import hookimpl
from sd_actors.policies import HostCapacity, PlacementRequest, Scheduler

POLICY = "alphabetical"


@hookimpl
def sd_actors_place(component: PlacementRequest, hosts: Sequence[HostCapacity], policy: str) -> HostCapacity | None:
    if policy != POLICY:
        return None  # a built-in policy, or another plugin's: let the next implementation decide
    # Every host offered has room for the component already (the Scheduler's filters saw to that).
    return min(hosts, key=lambda host: host.host)


class AlphabeticalScheduler(Scheduler):
    """A Scheduler that always places by the "alphabetical" policy."""

    def create(self) -> None:
        self.context.set_attribute("policy", POLICY)
        super().create()


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    return {"example.placement.AlphabeticalScheduler": AlphabeticalScheduler}
