"""The workflow components as a plugin: their sfClass names, sd-actors' and SmartFrog's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from sd_actors.actors import Component
from sd_actors.actors.workflow._delay import Delay
from sd_actors.actors.workflow._do_nothing import DoNothing
from sd_actors.actors.workflow._during import During
from sd_actors.actors.workflow._parallel import Parallel
from sd_actors.actors.workflow._repeat import Repeat
from sd_actors.actors.workflow._retry import Retry
from sd_actors.actors.workflow._run import Run
from sd_actors.actors.workflow._sequence import Sequence
from sd_actors.actors.workflow._terminator import Terminator
from sd_actors.actors.workflow._timeout import Timeout
from sd_actors.actors.workflow._try import Try
from sd_actors.plugins.hookspecs import hookimpl

_COMBINATORS: Final = (Sequence, Parallel, Retry, Repeat, Timeout, During, Delay, Try, Run)
_COMPONENTS: Final = (Terminator, DoNothing)


@hookimpl
def sd_actors_component_types() -> Mapping[str, type[Component]]:
    types: dict[str, type[Component]] = {}
    for component in (*_COMBINATORS, *_COMPONENTS):
        types[f"sd_actors.actors.workflow.{component.__name__}"] = component
    # SmartFrog's Java class names, so descriptions written against its library deploy too.
    for component in _COMBINATORS:
        types[f"org.smartfrog.sfcore.workflow.combinators.{component.__name__}"] = component
    for component in _COMPONENTS:
        types[f"org.smartfrog.sfcore.workflow.components.{component.__name__}"] = component
    return types
