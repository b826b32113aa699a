"""The component library: every file includes on its own, and its components, functions and
schemas resolve to what the library promises (descriptions/library/README.md)."""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path
from typing import Any, Final

import pytest

from sd_actors.descriptions import DescriptionError, parse_file

LIBRARY: Final = Path(str(importlib.resources.files("sd_actors.descriptions") / "library"))
LIBRARY_FILES: Final = sorted(path.relative_to(LIBRARY).as_posix() for path in LIBRARY.rglob("*.sf"))

CORE: Final = "org/smartfrog/components.sf"
WORKFLOW: Final = "org/smartfrog/sfcore/workflow/combinators/components.sf"
SHELL: Final = "org/smartfrog/services/shellscript/components.sf"
MANAGEMENT: Final = "org/smartfrog/services/management/components.sf"
SMARTDOMAINS: Final = "ch/cern/openlab/smartdomains/components.sf"


def resolve(tmp_path: Path, text: str) -> Any:
    """Write ``text`` as a description and return its resolved sfConfig."""
    source = tmp_path / "description.sf"
    source.write_text(text, encoding="utf-8")
    return parse_file(source)


def one_component(include: str, component: str, body: str) -> str:
    return f'#include "{include}"\nsfConfig extends Compound {{\n    c extends {component} {{ {body} }}\n}}\n'


def same_kind_and_value(actual: object, expected: object) -> bool:
    return type(actual) is type(expected) and actual == expected


# -- the files -----------------------------------------------------------------------------------


def test_the_library_has_the_include_paths_smartfrog_and_smartdomains_descriptions_use() -> None:
    assert {CORE, WORKFLOW, SHELL, SMARTDOMAINS, "org/smartfrog/sfcore/workflow/combinators/parallel.sf",
            "ch/cern/openlab/util/schemas.sf"} <= set(LIBRARY_FILES)


@pytest.mark.parametrize("leading_slash", ["", "/"], ids=["relative", "leading-slash"])
@pytest.mark.parametrize("include", LIBRARY_FILES)
def test_every_library_file_can_be_included_on_its_own(tmp_path: Path, include: str, leading_slash: str) -> None:
    config = resolve(tmp_path, f'#include "{leading_slash}{include}"\nsfConfig extends {{ }}\n')

    assert config.items() == []


def test_including_a_library_file_twice_changes_nothing(tmp_path: Path) -> None:
    body = 'sfConfig extends Compound { vm extends VM { domainName "vm1"; } }\n'
    once = resolve(tmp_path, f'#include "{SMARTDOMAINS}"\n{body}')

    twice = resolve(tmp_path, f'#include "{SMARTDOMAINS}"\n#include "{CORE}"\n#include "{SMARTDOMAINS}"\n{body}')

    assert twice == once


def test_the_readme_lists_every_library_file() -> None:
    readme = (LIBRARY / "README.md").read_text(encoding="utf-8")

    listed = set(re.findall(r"`([\w/.]+\.sf)`", readme))

    assert listed == set(LIBRARY_FILES)


@pytest.mark.parametrize("include", LIBRARY_FILES)
def test_library_files_are_written_for_sd_actors_not_copied_from_smartfrog(include: str) -> None:
    text = (LIBRARY / include).read_text(encoding="utf-8")

    assert "Copyright" not in text
    assert "Hewlett-Packard" not in text
    assert "org.smartfrog." not in text
    assert text.startswith("// sd-actors component library")


# -- components -----------------------------------------------------------------------------------

COMPONENTS: Final = [
    (CORE, "Prim", "", "sd_actors.actors.Prim"),
    (CORE, "WorkflowPrim", "", "sd_actors.actors.Prim"),
    (CORE, "Compound", "", "sd_actors.actors.Compound"),
    (WORKFLOW, "Sequence", "", "sd_actors.actors.workflow.Sequence"),
    (WORKFLOW, "Parallel", "", "sd_actors.actors.workflow.Parallel"),
    (WORKFLOW, "Retry", "action extends DoNothing;", "sd_actors.actors.workflow.Retry"),
    (WORKFLOW, "Repeat", "action extends DoNothing;", "sd_actors.actors.workflow.Repeat"),
    (WORKFLOW, "Timeout", "time 1000; action extends DoNothing;", "sd_actors.actors.workflow.Timeout"),
    (WORKFLOW, "During", "time 1000; action extends DoNothing;", "sd_actors.actors.workflow.During"),
    (WORKFLOW, "Delay", "time 1000;", "sd_actors.actors.workflow.Delay"),
    (WORKFLOW, "Try", "action extends DoNothing;", "sd_actors.actors.workflow.Try"),
    (WORKFLOW, "Run", "action extends LAZY DoNothing;", "sd_actors.actors.workflow.Run"),
    (WORKFLOW, "Terminator", "kill LAZY ROOT:somewhere;", "sd_actors.actors.workflow.Terminator"),
    (WORKFLOW, "DoNothing", "", "sd_actors.actors.workflow.DoNothing"),
    (SHELL, "Shell", "", "sd_actors.plugins.Shell"),
    (SHELL, "BashShell", "", "sd_actors.plugins.Shell"),
    (MANAGEMENT, "DeployManagement", "", "sd_actors.actors.WebConsole"),
    (SMARTDOMAINS, "VM", 'domainName "vm1";', "sd_actors.plugins.VM"),
    (SMARTDOMAINS, "XenDomain", 'domainName "vm1";', "sd_actors.plugins.VM"),
    (SMARTDOMAINS, "LoopbackStorageBackend", "", "sd_actors.plugins.LoopbackStorageBackend"),
    (SMARTDOMAINS, "LVMStorageBackend", 'volumeGroup "vg0";', "sd_actors.plugins.LVMStorageBackend"),
    (SMARTDOMAINS, "Scheduler", "", "sd_actors.policies.Scheduler"),
    (SMARTDOMAINS, "Schedulee", "scheduler LAZY ATTRIB theScheduler;", "sd_actors.policies.Schedulee"),
]


@pytest.mark.parametrize(("include", "component", "body", "implementation"), COMPONENTS,
                         ids=[row[1] for row in COMPONENTS])
def test_each_component_resolves_with_the_sd_actors_class_that_implements_it(
    tmp_path: Path, include: str, component: str, body: str, implementation: str
) -> None:
    config = resolve(tmp_path, one_component(include, component, body))

    assert config["c"]["sfClass"] == implementation


REQUIRED: Final = [
    (SMARTDOMAINS, "VM", "", "domainName"),
    (SMARTDOMAINS, "XenDomain", "memory 256;", "domainName"),
    (SMARTDOMAINS, "LVMStorageBackend", "", "volumeGroup"),
    (SMARTDOMAINS, "StorageBackend", "", "sfClass"),
    (SMARTDOMAINS, "Schedulee", "", "scheduler"),
    (WORKFLOW, "Timeout", "action extends DoNothing;", "time"),
    (WORKFLOW, "During", "action extends DoNothing;", "time"),
    (WORKFLOW, "Delay", "", "time"),
    (WORKFLOW, "Retry", "", "action"),
    (WORKFLOW, "Repeat", "", "action"),
    (WORKFLOW, "Try", "", "action"),
    (WORKFLOW, "Run", "", "action"),
]


@pytest.mark.parametrize(("include", "component", "body", "missing"), REQUIRED,
                         ids=[f"{row[1]}-{row[3]}" for row in REQUIRED])
def test_a_component_without_a_required_attribute_is_rejected_naming_the_attribute(
    tmp_path: Path, include: str, component: str, body: str, missing: str
) -> None:
    with pytest.raises(DescriptionError) as excinfo:
        resolve(tmp_path, one_component(include, component, body))

    assert missing in str(excinfo.value)


WRONG_KINDS: Final = [
    (CORE, "Prim", "sfLivenessFactor 1.5f;", "sfLivenessFactor"),
    (CORE, "Prim", 'sfProcessHost 42;', "sfProcessHost"),
    (CORE, "Compound", 'sfSyncTerminate "yes";', "sfSyncTerminate"),
    (CORE, "Prim", "sfClass LAZY elsewhere;", "sfClass"),
    (WORKFLOW, "Parallel", 'asynchCreateChild "yes";', "asynchCreateChild"),
    (WORKFLOW, "Timeout", 'time "10s"; action extends DoNothing;', "time"),
    (WORKFLOW, "Retry", "retry 2; action 1;", "action"),
    (SHELL, "Shell", 'timeout "10s";', "timeout"),
    (SMARTDOMAINS, "VM", 'domainName "vm1"; memory "lots";', "memory"),
    (SMARTDOMAINS, "VM", 'domainName "vm1"; vcpus 1.5D;', "vcpus"),
    (SMARTDOMAINS, "VM", 'domainName "vm1"; keepVolumes 1;', "keepVolumes"),
    (SMARTDOMAINS, "VM", 'domainName 7;', "domainName"),
    (SMARTDOMAINS, "VM", 'domainName "vm1"; shell "bash";', "shell"),
    (SMARTDOMAINS, "VM", 'domainName "vm1"; storageBackend "disks";', "storageBackend"),
    (SMARTDOMAINS, "LVMStorageBackend", "volumeGroup true;", "volumeGroup"),
    (SMARTDOMAINS, "Scheduler", 'hosts "host1";', "hosts"),
    (SMARTDOMAINS, "Schedulee", 'scheduler "theScheduler";', "scheduler"),
]


@pytest.mark.parametrize(("include", "component", "body", "attribute"), WRONG_KINDS,
                         ids=[f"{row[1]}-{row[3]}" for row in WRONG_KINDS])
def test_an_attribute_of_the_wrong_kind_is_rejected_naming_the_attribute(
    tmp_path: Path, include: str, component: str, body: str, attribute: str
) -> None:
    with pytest.raises(DescriptionError) as excinfo:
        resolve(tmp_path, one_component(include, component, body))

    assert attribute in str(excinfo.value)


def test_static_schemas_are_checked_then_left_out_of_the_resolved_tree(tmp_path: Path) -> None:
    config = resolve(tmp_path, one_component(SMARTDOMAINS, "VM", 'domainName "vm1";'))

    assert "vmSchema" not in config["c"]
    assert "sfPrimSchema" not in config
    assert "sfPrimSchema" not in config["c"]


@pytest.mark.parametrize("delay", ["0.2D", "0.2f", "240L", "15"], ids=["double", "float", "long", "integer"])
def test_the_liveness_delay_may_be_any_number_of_seconds(tmp_path: Path, delay: str) -> None:
    config = resolve(tmp_path, one_component(CORE, "Prim", f"sfLivenessDelay {delay}; sfLivenessFactor 3;"))

    assert config["c"]["sfLivenessFactor"] == 3


def test_a_vm_gets_the_smartdomains_defaults_for_what_it_does_not_say(tmp_path: Path) -> None:
    config = resolve(tmp_path, one_component(SMARTDOMAINS, "VM", 'domainName "vm1";'))

    vm = config["c"]
    defaults = {
        "memory": 512, "vcpus": 1, "volumeSize": "1g", "swapSize": "512m", "makeFs": "mkfs.ext3",
        "usingExistingVolumes": False, "keepVolumes": "statuquo", "saveImage": False,
        "saveImagePath": "/tmp", "saveImageExtension": "tar.gz", "domainLivenessCheck": True,
        "domainLivenessDelay": 2000, "domainLivenessFactor": 3,
    }
    assert {name: vm[name] for name in defaults} == defaults
    for optional in ("hypervisor", "domainType", "kernel", "ip", "baseImage", "storageBackend", "shell"):
        assert optional not in vm


def test_a_vm_accepts_every_attribute_of_the_design(tmp_path: Path) -> None:
    body = """
        domainName "vm1"; hypervisor "qemu:///system"; domainType "kvm"; memory 1024L; vcpus 2;
        kernel "/boot/vmlinuz"; ramdisk "/boot/initrd.img"; extra "console=ttyS0";
        ip "10.0.0.5"; gateway "10.0.0.1"; netmask "255.255.255.0"; hostname "vm1";
        baseImage "/images/base.tar.gz"; volumeSize "2g"; swapSize "0"; makeFs "mkfs.ext4";
        volumeBaseName "vm1-vol"; usingExistingVolumes true; keepVolumes true;
        saveImage true; saveImageName "vm1-final"; saveImagePath "/srv/images"; saveImageExtension "tar";
        tempMountPoint "/mnt/vm1"; domainLivenessCheck false; domainLivenessDelay 500L;
        domainLivenessFactor 5; storageBackend LAZY ATTRIB disks; shell LAZY ATTRIB myShell;
        sfProcessHost "host1";
    """

    config = resolve(tmp_path, one_component(SMARTDOMAINS, "VM", body))

    vm = config["c"]
    assert vm["keepVolumes"] is True
    assert vm["hostname"] == "vm1"
    assert getattr(vm["storageBackend"], "lazy", None) is True
    assert getattr(vm["shell"], "lazy", None) is True


def test_a_storage_backend_accepts_the_attributes_2007_descriptions_gave_it(tmp_path: Path) -> None:
    # As on the 2007 slides' management console screenshot.
    body = """
        shell LAZY myShell; volumeGroup "vg1"; volumeSize "10g"; saveImage false;
        saveImageExtension "tar.gz"; saveImagePath "/tmp"; baseImage "/Nodes_status_Backup/tar";
        domainName "ctb-generic-3"; sfLivenessDelay 240L; sfLivenessFactor 2;
        swapSize "512m"; keepVolumes "statuquo"; usingExistingVolumes false; makeFs "mkfs.ext3";
    """

    config = resolve(tmp_path, one_component(SMARTDOMAINS, "LVMStorageBackend", body))

    backend = config["c"]
    assert backend["volumeGroup"] == "vg1"
    assert backend["domainName"] == "ctb-generic-3"
    assert backend["saveImageExtension"] == "tar.gz"


def test_a_loopback_storage_backend_is_a_libvirt_dir_pool_with_a_default_name_and_folder(tmp_path: Path) -> None:
    config = resolve(tmp_path, one_component(SMARTDOMAINS, "LoopbackStorageBackend", ""))

    backend = config["c"]
    assert backend["poolName"] == "sd-actors"
    assert backend["poolPath"] == "/var/lib/sd-actors/images"
    assert backend["volumeFormat"] == "raw"


def test_parallel_has_smartfrogs_defaults(tmp_path: Path) -> None:
    config = resolve(tmp_path, one_component("org/smartfrog/sfcore/workflow/combinators/parallel.sf",
                                             "Parallel", ""))

    parallel = config["c"]
    assert parallel["asynchCreateChild"] is False
    assert parallel["terminateOnEmptyDeploy"] is False
    assert parallel["terminateOnAbnormalChildTermination"] is True
    assert parallel["terminateOnAbnormalChildDeploy"] is True


def test_a_scheduler_without_hosts_may_use_every_host(tmp_path: Path) -> None:
    config = resolve(tmp_path, one_component(SMARTDOMAINS, "Scheduler", ""))

    assert config["c"]["hosts"] == []


# -- functions --------------------------------------------------------------------------------------

FUNCTIONS: Final = [
    ("sum", "-- 1; -- 2; -- 3;", 6),
    ("plus", "-- 1; -- 2; -- 3;", 6),
    ("product", "-- 2; -- 3; -- 4;", 24),
    ("minus", "left 10; right 4;", 6),
    ("divide", "left 7; right 2;", 3),
    ("mod", "left 7; right 3;", 1),
    ("concat", '-- "vm-"; -- 42;', "vm-42"),
    ("append", "-- [|1, 2|]; -- [|3|];", [1, 2, 3]),
    ("vector", '-- "x"; -- 42;', ["x", 42]),
    ("formatString", 'format "vm-$1"; s1 "a";', "vm-a"),
    ("and", "-- true; -- false;", False),
    ("or", "-- true; -- false;", True),
    ("xor", "-- true; -- false;", True),
    ("implies", "-- true; -- false;", False),
    ("not", "data false;", True),
    ("GE", "left 2; right 2;", True),
    ("LE", "left 3; right 2;", False),
    ("GT", "left 3; right 2;", True),
    ("LT", "left 3; right 2;", False),
    ("EQ", 'left "a"; right "a";', True),
    ("NE", 'left "a"; right "a";', False),
    ("ifThenElse", 'if (2 > 1); then "yes"; else "no";', "yes"),
    ("System", "a 45; b 65; system (a + b);", 110),
    ("ref", 'reference "ROOT:value1";', 43),
    ("Ref", 'reference "ROOT:value1";', 43),
    ("next", "", 0),
]


@pytest.mark.parametrize(("template", "body", "expected"), FUNCTIONS, ids=[row[0] for row in FUNCTIONS])
def test_each_function_template_computes_its_function(
    tmp_path: Path, template: str, body: str, expected: object
) -> None:
    text = (
        '#include "org/smartfrog/functions.sf"\n'
        "value1 43;\n"
        f"sfConfig extends {{ result extends {template} {{ {body} }} }}\n"
    )

    config = resolve(tmp_path, text)

    assert same_kind_and_value(config["result"], expected)


# -- schemas ----------------------------------------------------------------------------------------

SCHEMA_ENTRIES: Final = [
    ("Integer", "1", True), ("Integer", '"1"', False), ("Integer", "1L", False),
    ("Long", "1L", True), ("Long", "1", True), ("Long", "1.5D", False),
    ("Float", "1.5f", True), ("Float", "1", True), ("Float", "1L", False),
    ("Double", "1.5D", True), ("Double", "1.5f", True), ("Double", "1L", True), ("Double", "1", True),
    ("Double", '"1.5"', False),
    ("String", '"s"', True), ("String", "1", False),
    ("Boolean", "true", True), ("Boolean", '"true"', False),
    ("Vector", "[|1, 2|]", True), ("Vector", "1", False),
    ("CD", "extends DATA { a 1; }", True), ("CD", "1", False),
    ("Reference", "LAZY other", True), ("Reference", '"other"', False),
    ("Null", "NULL", True), ("Null", "0", False),
    ("Compulsory", '"anything"', True),
]


def checked_value(entry: str, value: str | None) -> str:
    line = f"value {value};" if value is not None else ""
    return (
        '#include "org/smartfrog/predicates.sf"\n'
        "other 1;\n"
        "sfConfig extends {\n"
        f"    checked extends {{ checkedSchema extends Schema {{ value extends {entry}; }} {line} }}\n"
        "}\n"
    )


@pytest.mark.parametrize(("entry", "value", "accepted"), SCHEMA_ENTRIES,
                         ids=[f"{row[0]}-{row[1]}" for row in SCHEMA_ENTRIES])
def test_each_schema_entry_accepts_exactly_its_kinds(tmp_path: Path, entry: str, value: str, accepted: bool) -> None:
    text = checked_value(entry, value)

    if accepted:
        assert "value" in resolve(tmp_path, text)["checked"]
    else:
        with pytest.raises(DescriptionError) as excinfo:
            resolve(tmp_path, text)
        assert "value" in str(excinfo.value)


KINDS: Final = ["Integer", "Long", "Float", "Double", "String", "Boolean", "Vector", "CD", "Reference", "Null"]


@pytest.mark.parametrize("entry", ["Optional"] + [f"Optional{kind}" for kind in KINDS])
def test_an_optional_schema_entry_may_be_left_out(tmp_path: Path, entry: str) -> None:
    config = resolve(tmp_path, checked_value(entry, None))

    assert "value" not in config["checked"]


@pytest.mark.parametrize("entry", ["Compulsory", *KINDS])
def test_a_compulsory_schema_entry_may_not_be_left_out(tmp_path: Path, entry: str) -> None:
    with pytest.raises(DescriptionError) as excinfo:
        resolve(tmp_path, checked_value(entry, None))

    assert "value" in str(excinfo.value)


def test_schema_entries_also_take_smartfrogs_java_class_names(tmp_path: Path) -> None:
    text = (
        '#include "org/smartfrog/predicates.sf"\n'
        "sfConfig extends {\n"
        '    checked extends { checkedSchema extends Schema { value extends Compulsory { class "java.lang.Integer"; } }'
        " value 1; }\n"
        "}\n"
    )

    assert resolve(tmp_path, text)["checked"]["value"] == 1
