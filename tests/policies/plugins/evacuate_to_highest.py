"""A plugin module loaded by daemons with ``--plugin evacuate_to_highest`` in tests/policies/test_partition.py:
the part of a failed child whose host is gone moves to the live host with the highest address."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence

from sd_actors.actors import ComponentRef
from sd_actors.plugins import hookimpl


@hookimpl
def sd_actors_evacuate_to(restarter: ComponentRef, path: tuple[str, ...], lost_host: str,
                          candidates: Sequence[str], load: Mapping[str, int]) -> str:
    return max(candidates, key=_address)


def _address(endpoint: str) -> ipaddress.IPv4Address:
    """tcp://10.77.5.3:3800 → 10.77.5.3"""
    return ipaddress.IPv4Address(endpoint.split("//")[-1].rsplit(":", 1)[0])
