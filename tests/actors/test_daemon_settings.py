"""A daemon's own options reach the components it runs."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import cast

import libvirt

from sd_actors.actors._daemon import DaemonSettings, open_daemon
from sd_actors.descriptions import parse_string
from sd_actors.plugins._vm import VM

VM_APP = """
#include "ch/cern/openlab/smartdomains/components.sf"
sfConfig extends Compound { vm extends VM { domainName "settings-test-vm"; memory 64; } }
"""
# A simulated host of libvirt's test driver: its own state, CPUs and memory.
HOST = ("<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads><active>2</active>"
        "<mhz>2000</mhz></cpu><memory>4194304</memory></node>")


def test_the_daemons_hypervisor_option_is_the_hypervisor_of_vms_that_name_none(tmp_path: Path) -> None:
    host = tmp_path / "host.xml"
    host.write_text(HOST)
    uri = f"test://{host}"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = DaemonSettings(bind=f"tcp://127.0.0.1:{port}", state_dir=tmp_path / "state", insecure=True,
                              hypervisor=uri)

    with open_daemon(settings) as daemon:
        daemon.system.deploy(parse_string(VM_APP), name="app")
        runs_on = daemon.system.lookup("app:vm").call(lambda vm: cast(VM, vm).hypervisor)
        on_the_default = [domain.name() for domain in libvirt.open("test:///default").listAllDomains()]
        daemon.system.terminate("app")

    assert runs_on == uri
    assert "settings-test-vm" not in on_the_default
