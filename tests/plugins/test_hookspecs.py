"""The hooks are the plugin author's manual: each is documented, and each works as documented."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from sd_actors.actors import (
    Component,
    ComponentRef,
    ComponentSpec,
    Compound,
    Prim,
    Reaction,
    State,
    TerminationRecord,
    open_system,
)
from sd_actors.plugins import collect_component_types, hookimpl, hookspecs, make_plugin_manager

HOOKS = sorted(name for name, _ in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("sd_actors_"))


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_documents_when_it_is_called_each_argument_and_what_to_return(name: str) -> None:
    function = getattr(hookspecs, name)
    doc = inspect.getdoc(function) or ""

    assert "Called" in doc, f"{name}: say when the hook is called"
    for parameter in inspect.signature(function).parameters:
        assert f":param {parameter}:" in doc, f"{name}: document the argument {parameter!r}"
    assert ":returns:" in doc, f"{name}: say what to return"


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_its_own_test(name: str) -> None:
    tests = "\n".join(p.read_text() for p in Path(__file__).resolve().parents[1].rglob("test_*.py"))

    assert re.search(rf"def test_hook_{name}\w*\(", tests), f"write a test named test_hook_{name}_…"


class Greeter(Prim):
    """A third-party component type."""

    def start(self) -> None:
        self.context.ref.description.set("greeting", "hello")


class GreeterPlugin:
    @hookimpl
    def sd_actors_component_types(self) -> dict[str, type[Component]]:
        return {"example.Greeter": Greeter}


def test_hook_sd_actors_component_types_adds_a_component_type_that_descriptions_can_name() -> None:
    manager = make_plugin_manager(load_entry_points=False, plugins=[GreeterPlugin()])

    with open_system(plugin_manager=manager) as system:
        root = system.deploy(ComponentSpec("example.Greeter"), name="app")

        assert root.state is State.STARTED
        assert root.description["greeting"] == "hello"


def test_hook_sd_actors_component_types_refuses_one_name_for_two_types() -> None:
    class Other(Prim):
        pass

    class Clash:
        @hookimpl
        def sd_actors_component_types(self) -> dict[str, type[Component]]:
            return {"example.Greeter": Other}

    manager = make_plugin_manager(load_entry_points=False, plugins=[GreeterPlugin(), Clash()])

    with pytest.raises(ValueError, match=r"example\.Greeter"):
        collect_component_types(manager)


class Ends(Component):
    def start(self) -> None:
        self.context.terminate_self(self.context.record("abnormal", "worker crashed"))


class KeepGoing:
    """A policy that lets a Compound outlive its children."""

    def __init__(self) -> None:
        self.seen: list[tuple[tuple[str, ...], str]] = []

    @hookimpl
    def sd_actors_child_terminated(
        self, parent: ComponentRef, child: ComponentRef, record: TerminationRecord
    ) -> Reaction | None:
        self.seen.append((child.path, record.kind))
        return Reaction.CONTINUE


def test_hook_sd_actors_child_terminated_lets_a_policy_replace_shared_fate() -> None:
    policy = KeepGoing()
    manager = make_plugin_manager(load_entry_points=False, plugins=[policy])

    with open_system(plugin_manager=manager) as system:
        root = system.deploy(ComponentSpec(Compound, children={"w": ComponentSpec(Ends)}), name="app")
        system.wait_for_state("app:w", State.FAILED, timeout=5)

        assert root.state is State.STARTED
        assert policy.seen == [(("app", "w"), "abnormal")]


def test_hook_sd_actors_child_terminated_defaults_to_shared_fate() -> None:
    manager = make_plugin_manager(load_entry_points=False)

    with open_system(plugin_manager=manager) as system:
        system.deploy(ComponentSpec(Compound, children={"w": ComponentSpec(Ends)}), name="app")
        root = system.wait_for_state("app", State.FAILED, timeout=5)

        assert root.record is not None
        assert root.record.path == ("app", "w")
        assert root.record.description == "worker crashed"


class HelloCommandPlugin:
    @hookimpl
    def sd_actors_cli_commands(self, commands, client_options) -> None:  # type: ignore[no-untyped-def]
        hello = commands.add_parser("hello", help="greet someone")
        hello.add_argument("who")
        client_options(hello)
        hello.set_defaults(run=lambda arguments, out: out.write(f"hello {arguments.who} via "
                                                                f"{arguments.host}\n") and 7)


def test_hook_sd_actors_cli_commands_adds_a_command_that_runs_with_the_client_options(
        capsys: pytest.CaptureFixture[str]) -> None:
    from sd_actors.actors._cli import build_parser, main

    manager = make_plugin_manager(load_entry_points=False, plugins=[HelloCommandPlugin()])

    status = main(["hello", "world", "--host", "10.0.0.2"], plugin_manager=manager)

    assert status == 7
    assert capsys.readouterr().out == "hello world via 10.0.0.2\n"
    assert "greet someone" in build_parser(manager).format_help()
