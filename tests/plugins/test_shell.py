"""Shell: runs commands with a timeout, captures their output, turns exit statuses into records,
serves other components through a LAZY link, and never leaves a process behind."""

from __future__ import annotations

import concurrent.futures
import os
import select
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Final, cast

import pytest

from sd_actors.actors import (
    ABNORMAL,
    NORMAL,
    Component,
    ComponentFailed,
    ComponentRef,
    ComponentSpec,
    Prim,
    State,
    System,
    open_system,
)
from sd_actors.descriptions import parse_string
from sd_actors.plugins import hookimpl, make_plugin_manager
from sd_actors.plugins._shell import CommandResult, Shell

WAIT: Final = 5.0
"""Seconds to wait for something that happens at once unless the runtime is broken."""

SHELL: Final = "sd_actors.plugins.Shell"
FINAL: Final = (State.TERMINATED, State.FAILED)


class Caller(Prim):
    """A component that has its commands run by the Shell its ``shell`` attribute links to."""

    def run(self, command: str) -> CommandResult:
        shell = cast(ComponentRef, self.context.attribute("shell"))
        return cast(CommandResult, shell.call(lambda s: cast(Shell, s).run(command)))

    def greet(self, name: str) -> CommandResult:
        return self.run(f"echo $GREETING {shlex.quote(name)}")


class CallerPlugin:
    @hookimpl
    def sd_actors_component_types(self) -> dict[str, type[Component]]:
        return {"tests.Caller": Caller}


@pytest.fixture
def system() -> Iterator[System]:
    manager = make_plugin_manager(load_entry_points=False, plugins=[CallerPlugin()])
    with open_system(plugin_manager=manager) as system:
        yield system


def run(system: System, path: str, command: str, *, timeout: float | None = None, input: str | None = None
        ) -> CommandResult:
    """Ask the Shell at ``path`` to run ``command``, as another component would."""
    shell = system.lookup(path)
    return cast(CommandResult, shell.call(lambda s: cast(Shell, s).run(command, timeout=timeout, input=input),
                                          timeout=WAIT))


class Started:
    """A FIFO a command writes a pid to, so the test knows the process runs without polling for it."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "started"
        os.mkfifo(self.path)
        self._reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)

    def pid(self) -> int:
        readable, _, _ = select.select([self._reader], [], [], WAIT)
        assert readable, "the command did not start"
        return int(os.read(self._reader, 64).decode())

    def close(self) -> None:
        os.close(self._reader)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Started]:
    fifo = Started(tmp_path)
    yield fifo
    fifo.close()


def ended(pid: int) -> bool:
    """Wait until process ``pid`` has exited (a SIGKILL takes effect a moment after it is sent)."""
    try:
        descriptor = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([descriptor], [], [], WAIT)
        return bool(readable)
    finally:
        os.close(descriptor)


# -- running a command -------------------------------------------------------------------------------


def test_a_command_gives_its_exit_status_stdout_stderr_and_duration(system: System) -> None:
    system.deploy(ComponentSpec(SHELL), name="shell")

    result = run(system, "shell", "echo out; echo err >&2; exit 3")

    assert (result.command, result.exit_status, result.stdout, result.stderr) == (
        "echo out; echo err >&2; exit 3", 3, "out\n", "err\n")
    assert result.duration > 0
    assert not result.ok
    assert not result.timed_out


def test_input_is_written_to_the_command_and_its_stdin_then_closed(system: System) -> None:
    system.deploy(ComponentSpec(SHELL), name="shell")

    result = run(system, "shell", "tr a-z A-Z", input="hello\n" * 10000)

    assert result.ok
    assert result.stdout == "HELLO\n" * 10000


def test_commands_run_in_the_descriptions_folder_with_its_environment(system: System, tmp_path: Path) -> None:
    description = parse_string(
        '#include "org/smartfrog/components.sf"\n'
        '#include "org/smartfrog/services/shellscript/components.sf"\n'
        f'sfConfig extends BashShell {{ dir "{tmp_path}"; env extends DATA {{ GREETING "hello"; COUNT 3; }} }}\n')
    system.deploy(description, name="shell")

    result = run(system, "shell", "echo $GREETING $COUNT; pwd; echo ${HOME:+home is set}")

    assert result.stdout == f"hello 3\n{tmp_path}\nhome is set\n"


def test_a_command_that_runs_past_the_timeout_is_killed_with_its_whole_process_group(
        system: System, started: Started) -> None:
    system.deploy(ComponentSpec(SHELL, {"timeout": 200}), name="shell")

    result = run(system, "shell", f"sleep 60 & echo $! > {started.path}; wait")

    assert result.timed_out
    assert result.exit_status == -9
    assert result.describe().endswith("timed out after 0.2 s and was killed")
    assert ended(started.pid())


def test_a_timeout_given_to_run_overrides_the_descriptions(system: System) -> None:
    system.deploy(ComponentSpec(SHELL, {"timeout": 60_000}), name="shell")

    result = run(system, "shell", "sleep 60", timeout=0.1)

    assert result.timed_out


def test_what_a_command_leaves_running_in_the_background_ends_with_it(system: System, started: Started) -> None:
    system.deploy(ComponentSpec(SHELL), name="shell")

    result = run(system, "shell", f"sleep 60 >/dev/null 2>&1 & echo $! > {started.path}")

    assert result.ok
    assert ended(started.pid())


def test_the_command_string_is_given_to_the_configured_shell_as_is(system: System, tmp_path: Path) -> None:
    system.deploy(ComponentSpec(SHELL, {"shell": "/bin/sh"}), name="shell")
    untrusted = "x; touch pwned"

    result = run(system, "shell", f"cd {shlex.quote(str(tmp_path))} && echo {shlex.quote(untrusted)}")

    assert result.stdout == "x; touch pwned\n"
    assert not (tmp_path / "pwned").exists()


def test_a_shell_that_is_not_a_program_fails_the_deployment(system: System) -> None:
    with pytest.raises(ComponentFailed) as excinfo:
        system.deploy(ComponentSpec(SHELL, {"shell": "/no/such/shell"}), name="shell")

    assert "shell '/no/such/shell' is not an executable program" in excinfo.value.record.description


# -- commands from the description ---------------------------------------------------------------------


@pytest.mark.parametrize(("attributes", "kind", "description", "cause", "outputs"), [
    ({"commands": ["true", "echo done"]}, NORMAL, "2 commands exited with status 0", None, ["", "done\n"]),
    ({"commands": ["echo one", "echo oops >&2; exit 4", "touch ran"]}, ABNORMAL,
     "command 2 of 3 failed: 'echo oops >&2; exit 4' exited with status 4", "oops", ["one\n", ""]),
    ({"commands": ["echo one", "sleep 60", "touch ran"], "timeout": 100}, ABNORMAL,
     "command 2 of 3 failed: 'sleep 60' timed out after 0.1 s and was killed", None, ["one\n", ""]),
], ids=["all-succeed", "one-fails", "one-times-out"])
def test_commands_run_at_start_in_order_and_their_outcome_terminates_the_shell(
        system: System, tmp_path: Path, attributes: dict[str, object], kind: str, description: str,
        cause: str | None, outputs: list[str]) -> None:
    system.deploy(ComponentSpec(SHELL, {**attributes, "sfShouldTerminate": True, "dir": str(tmp_path)}),
                  name="shell")

    shell = system.wait_for_state("shell", FINAL, timeout=WAIT)

    assert shell.record is not None
    assert (shell.record.kind, shell.record.description, shell.record.cause) == (kind, description, cause)
    assert shell.record.path == ("shell",)
    assert [result.stdout for result in cast(Shell, shell.component).results] == outputs
    assert not (tmp_path / "ran").exists()


def test_a_failing_command_terminates_the_shell_even_when_it_should_not_terminate(system: System) -> None:
    system.deploy(ComponentSpec(SHELL, {"commands": ["exit 1"]}), name="shell")

    shell = system.wait_for_state("shell", FINAL, timeout=WAIT)

    assert shell.record is not None
    assert shell.record.kind == ABNORMAL


def test_a_shell_with_commands_that_should_not_terminate_keeps_serving(system: System) -> None:
    description = parse_string(
        '#include "org/smartfrog/components.sf"\n'
        '#include "org/smartfrog/services/shellscript/components.sf"\n'
        'sfConfig extends Compound {\n'
        '    setup extends BashShell { commands ["true"]; timeout 5000; }\n'
        '    other extends Prim;\n'
        '}\n')
    system.deploy(description, name="app")

    result = run(system, "app:setup", "echo still here")

    assert result.stdout == "still here\n"
    assert system.lookup("app").state is State.STARTED


def test_terminating_the_shell_kills_the_command_it_is_running(system: System, started: Started) -> None:
    system.deploy(ComponentSpec(SHELL, {"commands": [f"sleep 60 & echo $! > {started.path}; wait"]}), name="shell")
    pid = started.pid()

    record = system.terminate("shell")

    assert record.kind == NORMAL
    assert ended(pid)


# -- used by other components ------------------------------------------------------------------------------

SERVED: Final = (
    '#include "org/smartfrog/components.sf"\n'
    '#include "org/smartfrog/services/shellscript/components.sf"\n'
    'sfConfig extends Compound {\n'
    '    myShell extends BashShell { env extends DATA { GREETING "hello"; } }\n'
    '    caller extends Prim { sfClass "tests.Caller"; shell LAZY myShell; }\n'
    '}\n'
)


def test_another_component_runs_commands_through_a_lazy_link_to_the_shell(system: System) -> None:
    system.deploy(parse_string(SERVED), name="app")
    caller = system.lookup("app:caller")

    result = cast(CommandResult, caller.call(lambda c: cast(Caller, c).greet("world; exit 7"), timeout=WAIT))

    assert result.ok
    assert result.stdout == "hello world; exit 7\n"


def test_terminating_the_application_kills_a_command_another_component_waits_for(
        system: System, started: Started) -> None:
    system.deploy(parse_string(SERVED), name="app")
    caller = system.lookup("app:caller")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as executor:
        waiting = executor.submit(caller.call, lambda c: cast(Caller, c).run(
            f"sleep 60 & echo $! > {started.path}; wait"))
        pid = started.pid()

        system.terminate("app")

        result = waiting.result(timeout=WAIT)
    assert result.exit_status == -9
    assert ended(pid)
    assert system.lookup("app").state is State.TERMINATED
