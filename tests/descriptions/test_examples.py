"""The example descriptions (descriptions/examples/), taken from SmartDomains' 2007 slides and
tutorial, resolve with their original #include lines and mean what the slides meant."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Final

import pytest

from sd_actors.descriptions import DescriptionError, parse_file

EXAMPLES: Final = Path(str(importlib.resources.files("sd_actors.descriptions") / "examples"))
EXAMPLE_NAMES: Final = ["domain.sf", "mgtConsole.sf", "parallel-pool.sf", "pool.sf", "qemu-pool.sf", "scheduler.sf"]

SLIDE_INCLUDES: Final = [
    '#include "org/smartfrog/components.sf"',
    '#include "ch/cern/openlab/smartdomains/components.sf"',
    '#include "org/smartfrog/services/shellscript/components.sf"',
]


def resolve(path: Path) -> Any:
    return parse_file(path)


def include_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("#include")]


def test_the_examples_are_the_ones_from_the_2007_slides_and_tutorial() -> None:
    assert sorted(path.name for path in EXAMPLES.glob("*.sf")) == EXAMPLE_NAMES


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_resolves_with_its_original_include_lines(name: str) -> None:
    config = resolve(EXAMPLES / name)

    assert config.items()


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_every_example_starts_by_saying_where_it_comes_from(name: str) -> None:
    text = (EXAMPLES / name).read_text(encoding="utf-8")

    header = text.split("#include", 1)[0]
    assert text.startswith("//")
    assert "From:" in header


def test_the_pool_keeps_the_three_include_lines_of_the_slide() -> None:
    assert include_lines(EXAMPLES / "pool.sf") == SLIDE_INCLUDES


def test_the_parallel_pool_includes_the_parallel_combinator_directly_as_the_tutorial_does() -> None:
    assert include_lines(EXAMPLES / "parallel-pool.sf") == [
        *SLIDE_INCLUDES,
        '#include "org/smartfrog/sfcore/workflow/combinators/parallel.sf"',
    ]


def test_the_pool_puts_each_physical_host_on_its_own_daemon() -> None:
    config = resolve(EXAMPLES / "pool.sf")

    assert config["sfClass"] == "sd_actors.actors.Compound"
    assert config["computer1"]["sfProcessHost"] == "xenhost1.cern.ch"
    assert config["computer2"]["sfProcessHost"] == "xenhost2.cern.ch"
    assert config["computer1"]["sfSyncTerminate"] is True
    assert config["computer1"]["myShell"]["sfClass"] == "sd_actors.plugins.Shell"


def test_the_pool_writes_each_storage_backend_before_the_domain_that_uses_it() -> None:
    config = resolve(EXAMPLES / "pool.sf")

    assert [name for name, _ in config["computer1"].items() if name in ("loop", "domain1", "lvm", "domain2")] == [
        "loop", "domain1", "lvm", "domain2",
    ]
    assert config["computer1"]["loop"]["sfClass"] == "sd_actors.plugins.LoopbackStorageBackend"
    assert config["computer1"]["lvm"]["sfClass"] == "sd_actors.plugins.LVMStorageBackend"


def test_the_pool_links_each_domain_lazily_to_its_shell_and_storage_backend() -> None:
    config = resolve(EXAMPLES / "pool.sf")

    domain = config["computer1"]["domain2"]
    assert domain["sfClass"] == "sd_actors.plugins.VM"
    assert getattr(domain["storageBackend"], "lazy", None) is True
    assert "lvm" in str(domain["storageBackend"])
    assert getattr(domain["shell"], "lazy", None) is True
    assert "myShell" in str(domain["shell"])


def test_the_pool_domains_inherit_the_default_xen_domain_and_the_vm_defaults() -> None:
    config = resolve(EXAMPLES / "pool.sf")

    domain = config["computer1"]["domain1"]
    assert domain["domainName"] == "domainLoopback"
    assert domain["kernel"] == "/boot/vmlinuz-2.6-xen"
    assert domain["netmask"] == "255.255.0.0"
    assert domain["memory"] == 512
    assert domain["keepVolumes"] == "statuquo"


def test_the_pool_leaves_its_templates_out_of_the_resolved_tree() -> None:
    config = resolve(EXAMPLES / "pool.sf")

    assert "DefaultXenDomain" not in config
    assert "PhysicalHost" not in config


def test_the_domain_example_gives_one_vm_every_attribute_of_the_slide() -> None:
    config = resolve(EXAMPLES / "domain.sf")

    slide = {
        "volumeSize": "1g", "swapSize": "512m", "usingExistingVolumes": False, "keepVolumes": "statuquo",
        "saveImage": True, "saveImageName": "", "saveImagePath": "/tmp", "saveImageExtension": "tar",
        "makeFs": "mkfs.ext3", "volumeBaseName": "volume1", "tempMountPoint": "/tmp/mnt",
        "kernel": "/boot/vmlinuz-2.6-xen", "ramdisk": "/boot/initrd-2.6-xen.img", "netmask": "255.255.0.0",
        "memory": 512, "vcpus": 1, "domainLivenessDelay": 2000, "domainLivenessFactor": 3,
        "domainLivenessCheck": True, "extra": "fastboot nousb", "domainName": "virtual-domain",
        "baseImage": "slc3-WN.tgz", "ip": "123.456.78.90", "gateway": "98.765.43.21", "hostname": "host",
    }
    assert config["sfClass"] == "sd_actors.plugins.VM"
    assert {name: config[name] for name in slide} == slide


def test_the_scheduler_example_has_the_schedulee_link_to_the_scheduler_and_hold_one_vm() -> None:
    config = resolve(EXAMPLES / "scheduler.sf")

    assert config["simpleScheduler"]["sfClass"] == "sd_actors.policies.Scheduler"
    assert config["simpleScheduler"]["hosts"] == ["host1", "host2", "host3"]
    schedulee = config["VMs2Dispatch"]
    assert schedulee["sfClass"] == "sd_actors.policies.Schedulee"
    assert getattr(schedulee["scheduler"], "lazy", None) is True
    vms = [value for name, value in schedulee.items() if name != "scheduler" and hasattr(value, "items")]
    assert [vm["sfClass"] for vm in vms] == ["sd_actors.plugins.VM"]


def test_the_parallel_pool_creates_its_machines_concurrently_one_compound_each() -> None:
    config = resolve(EXAMPLES / "parallel-pool.sf")

    pool = config["pool"]
    assert pool["sfClass"] == "sd_actors.actors.workflow.Parallel"
    assert pool["asynchCreateChild"] is True
    for name in ("smartDomain1", "smartDomain2"):
        assert pool[name]["sfClass"] == "sd_actors.actors.Compound"
        assert pool[name]["sfSyncTerminate"] is True


def test_the_management_console_example_deploys_the_web_console() -> None:
    config = resolve(EXAMPLES / "mgtConsole.sf")

    assert config["mngt"]["sfClass"] == "sd_actors.actors.WebConsole"


def test_a_pool_domain_without_domain_name_is_rejected_naming_the_attribute(tmp_path: Path) -> None:
    original = (EXAMPLES / "pool.sf").read_text(encoding="utf-8")
    named = 'domain2 extends DefaultXenDomain {\n            domainName "domainLVM";\n'
    assert named in original
    broken = tmp_path / "pool.sf"
    broken.write_text(original.replace(named, "domain2 extends DefaultXenDomain {\n"), encoding="utf-8")

    with pytest.raises(DescriptionError) as excinfo:
        parse_file(broken)

    assert "domainName" in str(excinfo.value)
    assert "domain2" in str(excinfo.value)


def test_a_vm_without_domain_name_is_rejected_naming_the_attribute(tmp_path: Path) -> None:
    source = tmp_path / "vm.sf"
    source.write_text(
        '#include "ch/cern/openlab/smartdomains/components.sf"\n'
        "sfConfig extends Compound { vm extends VM { memory 256; } }\n",
        encoding="utf-8",
    )

    with pytest.raises(DescriptionError) as excinfo:
        parse_file(source)

    assert "domainName" in str(excinfo.value)
