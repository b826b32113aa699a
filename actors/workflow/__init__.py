"""SmartFrog's workflow components: combinators that deploy their children one way or another.

Each is a component type named ``sd_actors.actors.workflow.<Name>`` (and by SmartFrog's Java
name); descriptions get them from ``#include "org/smartfrog/sfcore/workflow/components.sf"``.
Their children come from templates in their attributes, deployed when the workflow needs them;
a child's termination is handled in ``child_terminated`` instead of SmartFrog's shared fate.
"""

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

__all__ = [
    "Delay",
    "DoNothing",
    "During",
    "Parallel",
    "Repeat",
    "Retry",
    "Run",
    "Sequence",
    "Terminator",
    "Timeout",
    "Try",
]
