"""The journal: every operation, refusals that change nothing, and recovery after a real kill -9."""

from __future__ import annotations

import contextlib
import dataclasses
import operator
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

import pytest

from sd_actors.actors._errors import UnknownComponent
from sd_actors.actors._events import State
from sd_actors.actors._journal import (
    _MIGRATIONS,
    JOURNAL_FILE_NAME,
    SCHEMA_VERSION,
    ApplicationEntry,
    ApplicationRecovery,
    ApplicationStatus,
    ComponentEntry,
    DuplicateApplication,
    Journal,
    JournalError,
    JournalTooNew,
    PlacementEntry,
    RecordEntry,
    RecoveryPlan,
    UnknownApplication,
    WrongStatus,
    open_journal,
)
from sd_actors.actors._records import TerminationRecord
from sd_actors.descriptions import encode_description, parse_string, to_sf

REPOSITORY: Final = Path(__file__).resolve().parents[2]
APP: Final = "pool"
DESCRIPTION: Final = "sfConfig extends Compound {\n    vm0 extends VM;\n}\n"
RESOLVED: Final = ('sfConfig extends {\n    sfClass "sd_actors.actors.Compound";\n'
                   '    vm0 extends {\n        domainName "vm0";\n    }\n}\n')
"""A description as a daemon receives it: resolved, so it parses without the component library."""
DOWN: Final = TerminationRecord.normal("down requested", (APP,))
CRASHED: Final = TerminationRecord.abnormal("domain crashed", (APP, "vm0"), "libvirtError: domain is not running")


class Ticker:
    """A wall clock that moves one second per reading, so two runs of the same calls store the same times."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def journal(tmp_path: Path, ticker: Ticker) -> Iterator[Journal]:
    with open_journal(tmp_path / "state", clock=ticker) as opened:
        yield opened


def deploying(journal: Journal, app: str = APP) -> Journal:
    journal.begin_deploy(app, DESCRIPTION, requested_by="alice", host="host-a")
    return journal


def record_vm(journal: Journal, name: str, state: State = State.CREATED, *, resource: str | None = None) -> None:
    journal.record_component(APP, (APP, name), component_class="VM", host="host-a", state=state,
                             resource=resource or f"libvirt:qemu:///system:{name}-uuid")


def with_status(journal: Journal, status: ApplicationStatus, app: str = APP) -> Journal:
    """Bring ``app`` to ``status`` the way a daemon does."""
    deploying(journal, app)
    if status is ApplicationStatus.RUNNING:
        journal.mark_running(app)
    elif status is ApplicationStatus.TERMINATING:
        journal.begin_terminate(app, DOWN)
    elif status is ApplicationStatus.TERMINATED:
        journal.mark_terminated(app, DOWN)
    elif status is ApplicationStatus.FAILED:
        journal.mark_terminated(app, CRASHED)
    return journal


def snapshot(journal: Journal) -> tuple[object, ...]:
    """Everything the journal can say, for comparing two journals."""
    names = [entry.name for entry in journal.applications()]
    return (
        journal.applications(),
        [(journal.components(name), journal.placements(name), journal.records(name)) for name in names],
        journal.recover(),
    )


# -- opening ---------------------------------------------------------------------------------------
def test_opening_creates_the_state_directory_and_a_journal_in_wal_mode(tmp_path: Path) -> None:
    state_dir = tmp_path / "new" / "state"

    with open_journal(state_dir) as journal:
        assert journal.path == state_dir / JOURNAL_FILE_NAME

    assert state_dir.stat().st_mode & 0o777 == 0o700
    with contextlib.closing(sqlite3.connect(state_dir / JOURNAL_FILE_NAME)) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_a_journal_from_a_newer_version_is_refused_and_left_untouched(tmp_path: Path) -> None:
    with open_journal(tmp_path):
        pass
    path = tmp_path / JOURNAL_FILE_NAME
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    before = path.read_bytes()

    with pytest.raises(JournalTooNew) as excinfo, open_journal(tmp_path):
        pass

    assert (excinfo.value.found, excinfo.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)
    assert str(excinfo.value) == (
        f"{path}: the journal has schema version {SCHEMA_VERSION + 1}, but this sd-actors reads versions up to "
        f"{SCHEMA_VERSION}; upgrade sd-actors, or give the daemon another --state-dir"
    )
    assert path.read_bytes() == before


def test_replacing_a_finished_application_finds_the_rows_naming_its_records_by_index(tmp_path: Path) -> None:
    # Deploying a finished application's name again deletes its termination records, and SQLite
    # then sets the rows that name each one to NULL: a scan per record read every application's
    # description (2 s for a 1,000-VM pool after ten others).
    with open_journal(tmp_path):
        pass

    with contextlib.closing(sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)) as db:
        db.execute("PRAGMA foreign_keys = ON")
        plan = [row[3] for row in db.execute("EXPLAIN QUERY PLAN DELETE FROM termination_records WHERE app = ?",
                                             (APP,))]

    assert any("components_by_record" in step for step in plan), plan
    assert any("applications_by_record" in step for step in plan), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


def test_a_file_that_is_not_an_sqlite_database_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / JOURNAL_FILE_NAME).write_bytes(b"this is not a database, just some text " * 100)

    with pytest.raises(JournalError, match=r"journal\.sqlite3: not an SQLite database .*another --state-dir"), \
            open_journal(tmp_path):
        pass


def test_an_sqlite_database_that_is_not_a_journal_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)) as db, db:
        db.execute("CREATE TABLE photos (name TEXT)")

    with pytest.raises(JournalError, match="an SQLite database, but not an sd-actors journal"), open_journal(tmp_path):
        pass


def test_a_closed_journal_refuses_every_call(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        pass

    with pytest.raises(JournalError, match="the journal is closed"):
        journal.applications()
    journal.close()  # closing twice is harmless


def test_everything_survives_closing_and_reopening(tmp_path: Path, ticker: Ticker) -> None:
    with open_journal(tmp_path, clock=ticker) as journal:
        deploying(journal)
        journal.record_component(APP, (APP,), component_class="Compound", host="host-a", state=State.STARTED)
        record_vm(journal, "vm0")
        journal.record_state(APP, (APP, "vm0"), State.FAILED, CRASHED)
        journal.record_placement(APP, (APP, "remote"), "host-b")
        with_status(journal, ApplicationStatus.TERMINATED, app="old")
        before = snapshot(journal)

    with open_journal(tmp_path) as reopened:
        assert snapshot(reopened) == before


# -- applications ----------------------------------------------------------------------------------
def test_begin_deploy_records_a_deploying_application_with_who_asked_and_when(journal: Journal) -> None:
    journal.begin_deploy(APP, DESCRIPTION, requested_by="alice", host="host-a")

    assert journal.applications() == [ApplicationEntry(
        name=APP, status=ApplicationStatus.DEPLOYING, description_text=DESCRIPTION, requested_by="alice",
        host="host-a", created=1001.0, updated=1001.0, record=None,
    )]
    assert journal.application(APP) == journal.applications()[0]


def test_a_description_journaled_as_a_tree_alone_is_deployed_from_it_and_gets_its_text_later(
        journal: Journal) -> None:
    config = parse_string(RESOLVED, use_library=False)
    tree = encode_description(config)

    journal.begin_deploy(APP, "", description_tree=tree, requested_by="alice", host="host-a")

    entry = journal.application(APP)
    assert (entry.description_text, entry.description_tree) == ("", tree)
    assert entry.description() == config  # what a restart deploys again
    assert entry.text() == to_sf(config)
    journal.fill_description_text(APP, tree, to_sf(config))
    assert journal.application(APP).description_text == to_sf(config)


def test_filling_in_the_text_never_overwrites_another_description(journal: Journal) -> None:
    tree = encode_description(parse_string(RESOLVED, use_library=False))
    journal.begin_deploy(APP, RESOLVED, description_tree=tree, requested_by="alice", host="host-a")

    journal.fill_description_text(APP, tree, "sfConfig extends Compound;\n")  # the row has a text
    journal.fill_description_text(APP, b"another tree", "sfConfig extends Compound;\n")

    assert journal.application(APP).description_text == RESOLVED


def test_a_journal_of_schema_version_1_is_upgraded_and_its_descriptions_read_from_their_text(
        tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_FILE_NAME
    with contextlib.closing(sqlite3.connect(path)) as db, db:  # what sd-actors wrote before the trees
        for statement in _MIGRATIONS[0]:
            db.execute(statement)
        db.execute("UPDATE schema_version SET version = 1")
        db.execute("INSERT INTO applications (name, status, description_text, requested_by, host, created, updated)"
                   " VALUES (?, 'running', ?, 'alice', 'host-a', 1.0, 1.0)", (APP, RESOLVED))

    with open_journal(tmp_path) as journal:
        entry = journal.application(APP)

    assert (entry.description_text, entry.description_tree, entry.text()) == (RESOLVED, None, RESOLVED)
    assert entry.description() == parse_string(RESOLVED, use_library=False)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]


def test_applications_without_descriptions_leave_only_the_descriptions_out(journal: Journal) -> None:
    tree = encode_description(parse_string(RESOLVED, use_library=False))
    journal.begin_deploy(APP, RESOLVED, description_tree=tree, requested_by="alice", host="host-a")
    with_status(journal, ApplicationStatus.TERMINATED, "other")

    listed = journal.applications(with_descriptions=False)

    assert [(entry.description_text, entry.description_tree) for entry in listed] == [("", None), ("", None)]
    assert [dataclasses.replace(entry, description_text="", description_tree=None)
            for entry in journal.applications()] == listed


def test_mark_running_makes_a_deploying_application_running(journal: Journal) -> None:
    deploying(journal)

    journal.mark_running(APP)

    entry = journal.application(APP)
    assert (entry.status, entry.created, entry.updated, entry.record) == (
        ApplicationStatus.RUNNING, 1001.0, 1002.0, None)


def test_begin_terminate_makes_the_application_terminating_and_keeps_its_record(journal: Journal) -> None:
    with_status(journal, ApplicationStatus.RUNNING)

    journal.begin_terminate(APP, DOWN)

    entry = journal.application(APP)
    assert (entry.status, entry.record) == (ApplicationStatus.TERMINATING, DOWN)
    assert journal.records(APP) == [RecordEntry(app=APP, subject=None, time=1003.0, record=DOWN)]


@pytest.mark.parametrize(("record", "status"), [
    (DOWN, ApplicationStatus.TERMINATED),
    (CRASHED, ApplicationStatus.FAILED),
    (TerminationRecord("externalReferenceDead", "host-b stopped answering"), ApplicationStatus.FAILED),
], ids=["normal", "abnormal", "external-reference-dead"])
def test_mark_terminated_is_terminated_for_a_normal_record_and_failed_otherwise(
        journal: Journal, record: TerminationRecord, status: ApplicationStatus) -> None:
    with_status(journal, ApplicationStatus.TERMINATING)

    journal.mark_terminated(APP, record)

    entry = journal.application(APP)
    assert (entry.status, entry.record) == (status, record)
    assert [r.record for r in journal.records(APP)] == [DOWN, record]


@pytest.mark.parametrize("status", [ApplicationStatus.DEPLOYING, ApplicationStatus.RUNNING,
                                    ApplicationStatus.TERMINATING], ids=lambda s: s.value)
def test_deploying_an_unfinished_application_again_is_refused_as_a_duplicate_and_changes_nothing(
        journal: Journal, status: ApplicationStatus) -> None:
    with_status(journal, status)
    before = snapshot(journal)

    with pytest.raises(DuplicateApplication) as excinfo:
        journal.begin_deploy(APP, "something else", requested_by="bob", host="host-b")

    assert (excinfo.value.app, excinfo.value.status, excinfo.value.host) == (APP, status, "host-a")
    assert f"application 'pool' is already {status.value} on host-a; " in str(excinfo.value)
    assert snapshot(journal) == before


def test_the_duplicate_error_says_how_to_fix_it() -> None:
    running = DuplicateApplication(APP, ApplicationStatus.RUNNING, host="host-a")
    terminating = DuplicateApplication(APP, ApplicationStatus.TERMINATING, host="host-a")

    assert str(running) == ("application 'pool' is already running on host-a; run `sd-actors down pool` first, "
                            "or deploy the new one under another --name")
    assert str(terminating) == ("application 'pool' is already terminating on host-a; "
                                "wait until `sd-actors down pool` has finished")


@pytest.mark.parametrize("status", [ApplicationStatus.TERMINATED, ApplicationStatus.FAILED], ids=lambda s: s.value)
def test_a_finished_application_can_be_deployed_again_and_its_old_entry_is_replaced(
        journal: Journal, status: ApplicationStatus) -> None:
    deploying(journal)
    record_vm(journal, "vm0")
    journal.record_placement(APP, (APP, "remote"), "host-b")
    journal.mark_terminated(APP, CRASHED if status is ApplicationStatus.FAILED else DOWN)

    journal.begin_deploy(APP, "sfConfig extends Compound {}", requested_by="bob", host="host-c")

    entry = journal.application(APP)
    assert (entry.status, entry.requested_by, entry.host, entry.record) == (
        ApplicationStatus.DEPLOYING, "bob", "host-c", None)
    assert (journal.components(APP), journal.placements(APP), journal.records(APP)) == ([], [], [])


@pytest.mark.parametrize(("status", "operation"), [
    (ApplicationStatus.RUNNING, operator.methodcaller("mark_running", APP)),
    (ApplicationStatus.TERMINATING, operator.methodcaller("mark_running", APP)),
    (ApplicationStatus.TERMINATED, operator.methodcaller("begin_terminate", APP, DOWN)),
    (ApplicationStatus.FAILED, operator.methodcaller("mark_terminated", APP, DOWN)),
    (ApplicationStatus.RUNNING, operator.methodcaller("forget", APP)),
], ids=["running-again", "running-while-terminating", "terminate-terminated", "terminated-twice", "forget-running"])
def test_a_status_change_that_does_not_fit_is_refused_and_changes_nothing(
        journal: Journal, status: ApplicationStatus, operation: Callable[[Journal], None]) -> None:
    with_status(journal, status)
    before = snapshot(journal)

    with pytest.raises(WrongStatus) as excinfo:
        operation(journal)

    assert excinfo.value.status is status
    assert str(excinfo.value).startswith(f"application 'pool' is {status.value}; {excinfo.value.operation}() needs it ")
    assert snapshot(journal) == before


@pytest.mark.parametrize("operation", [
    operator.methodcaller("application", APP),
    operator.methodcaller("mark_running", APP),
    operator.methodcaller("begin_terminate", APP, DOWN),
    operator.methodcaller("mark_terminated", APP, DOWN),
    operator.methodcaller("forget", APP),
    operator.methodcaller("record_component", APP, (APP,), component_class="Compound", host="h", state=State.CREATED),
    operator.methodcaller("record_state", APP, (APP,), State.STARTED),
    operator.methodcaller("components", APP),
    operator.methodcaller("record_placement", APP, (APP, "remote"), "host-b"),
    operator.methodcaller("placements", APP),
    operator.methodcaller("records", APP),
], ids=lambda op: repr(op).split("'")[1])
def test_an_operation_on_an_unknown_application_says_so(journal: Journal,
                                                        operation: Callable[[Journal], object]) -> None:
    with pytest.raises(UnknownApplication) as excinfo:
        operation(journal)

    assert excinfo.value.app == APP
    assert str(excinfo.value) == "no application 'pool' in the journal; `sd-actors ls` lists the known ones"


def test_applications_lists_every_application_oldest_first(journal: Journal) -> None:
    with_status(journal, ApplicationStatus.FAILED, app="web")
    with_status(journal, ApplicationStatus.RUNNING, app="batch")

    assert [(a.name, a.status) for a in journal.applications()] == [
        ("web", ApplicationStatus.FAILED), ("batch", ApplicationStatus.RUNNING)]


def test_forget_removes_a_finished_application_with_everything_recorded_about_it(tmp_path: Path) -> None:
    with open_journal(tmp_path) as journal:
        deploying(journal)
        record_vm(journal, "vm0")
        journal.record_state(APP, (APP, "vm0"), State.FAILED, CRASHED)
        journal.record_placement(APP, (APP, "remote"), "host-b")
        journal.mark_terminated(APP, CRASHED)

        journal.forget(APP)

        assert journal.applications() == []
    with contextlib.closing(sqlite3.connect(tmp_path / JOURNAL_FILE_NAME)) as db:
        counts = [db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 -- fixed table names
                  for table in ("applications", "components", "placements", "termination_records")]
    assert counts == [0, 0, 0, 0]


# -- components ------------------------------------------------------------------------------------
def test_record_component_adds_then_replaces_a_component_keeping_the_order_it_was_first_recorded(
        journal: Journal) -> None:
    deploying(journal)
    journal.record_component(APP, (APP,), component_class="Compound", host="host-a", state=State.CREATED)
    journal.record_component(APP, (APP, "vm0"), component_class="VM", host="host-a", state=State.CREATED)

    journal.record_component(APP, (APP,), component_class="Compound", host="host-a", state=State.STARTED,
                             resource="cgroup:/pool")

    assert journal.components(APP) == [
        ComponentEntry(app=APP, path=(APP,), component_class="Compound", host="host-a", state=State.STARTED,
                       resource="cgroup:/pool", updated=1004.0, record=None),
        ComponentEntry(app=APP, path=(APP, "vm0"), component_class="VM", host="host-a", state=State.CREATED,
                       resource=None, updated=1003.0, record=None),
    ]


def test_record_state_keeps_the_resource_and_the_record_that_came_with_the_state(journal: Journal) -> None:
    deploying(journal)
    record_vm(journal, "vm0", resource="libvirt:qemu:///system:1234")

    journal.record_state(APP, (APP, "vm0"), State.FAILED, CRASHED)

    [vm] = journal.components(APP)
    assert (vm.state, vm.resource, vm.record, vm.updated) == (
        State.FAILED, "libvirt:qemu:///system:1234", CRASHED, 1004.0)
    assert journal.records(APP) == [RecordEntry(app=APP, subject=(APP, "vm0"), time=1003.0, record=CRASHED)]


def test_a_state_change_without_a_record_clears_the_current_record_but_not_the_history(journal: Journal) -> None:
    deploying(journal)
    record_vm(journal, "vm0")
    journal.record_state(APP, (APP, "vm0"), State.FAILED, CRASHED)

    journal.record_state(APP, (APP, "vm0"), State.STARTED)

    [vm] = journal.components(APP)
    assert (vm.state, vm.record) == (State.STARTED, None)
    assert [r.record for r in journal.records(APP)] == [CRASHED]


def test_record_state_of_a_component_never_recorded_is_refused(journal: Journal) -> None:
    deploying(journal)

    with pytest.raises(UnknownComponent, match=r"application 'pool' has no component 'pool:vm9' in the journal; "
                                                r"record it with record_component\(\) first"):
        journal.record_state(APP, (APP, "vm9"), State.FAILED, CRASHED)

    assert journal.records(APP) == []


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.value)
def test_every_lifecycle_state_can_be_recorded(journal: Journal, state: State) -> None:
    deploying(journal)

    record_vm(journal, "vm0", state)

    assert [c.state for c in journal.components(APP)] == [state]


@pytest.mark.parametrize("status", list(ApplicationStatus), ids=lambda s: s.value)
def test_every_application_status_can_be_recorded(journal: Journal, status: ApplicationStatus) -> None:
    with_status(journal, status)

    assert journal.application(APP).status is status


@pytest.mark.parametrize("path", [("pool", "a:b"), ("pool", "ünïcode", "名前"), ("pool", '"quoted"', "[1]")],
                         ids=["colon", "unicode", "json-like"])
def test_component_names_come_back_exactly_whatever_they_contain(journal: Journal, path: tuple[str, ...]) -> None:
    deploying(journal)

    journal.record_component(APP, path, component_class="Prim", host="host-a", state=State.CREATED)
    journal.record_state(APP, path, State.FAILED, TerminationRecord.abnormal("x", path))

    [component] = journal.components(APP)
    assert component.path == path
    assert component.record == TerminationRecord.abnormal("x", path)


@pytest.mark.parametrize("path", [(), ["pool", "vm0"], ("pool", ""), "pool:vm0"],
                         ids=["empty", "list", "empty-name", "string"])
def test_a_path_that_is_not_a_tuple_of_names_is_refused(journal: Journal, path: object) -> None:
    deploying(journal)

    with pytest.raises(ValueError, match="a component path"):
        journal.record_component(APP, path, component_class="VM", host="host-a", state=State.CREATED)  # type: ignore[arg-type]

    assert journal.components(APP) == []


# -- placements ------------------------------------------------------------------------------------
def test_record_placement_records_which_host_runs_a_subtree_and_replaces_it_on_a_move(journal: Journal) -> None:
    deploying(journal)
    journal.record_placement(APP, (APP, "web"), "host-b")
    journal.record_placement(APP, (APP, "db"), "host-c")

    journal.record_placement(APP, (APP, "web"), "host-d")

    assert journal.placements(APP) == [
        PlacementEntry(app=APP, path=(APP, "db"), host="host-c", updated=1003.0),
        PlacementEntry(app=APP, path=(APP, "web"), host="host-d", updated=1004.0),
    ]


# -- recovery --------------------------------------------------------------------------------------
def test_recover_sorts_unfinished_applications_by_what_the_daemon_must_do_and_leaves_out_finished_ones(
        journal: Journal) -> None:
    for status in ApplicationStatus:
        with_status(journal, status, app=status.value)
    journal.record_component("running", ("running", "vm0"), component_class="VM", host="host-a",
                             state=State.STARTED, resource="libvirt:uuid-0")
    journal.record_placement("running", ("running", "remote"), "host-b")

    plan = journal.recover()

    assert [[r.application.name for r in group] for group in (
        plan.unfinished_deploys, plan.to_reattach, plan.unfinished_terminations)] == [
        ["deploying"], ["running"], ["terminating"]]
    [running] = plan.to_reattach
    assert running.components == tuple(journal.components("running"))
    assert running.placements == (PlacementEntry(app="running", path=("running", "remote"), host="host-b",
                                                 updated=running.placements[0].updated),)
    assert plan.unfinished_terminations[0].application.record == DOWN
    assert not plan.is_empty


def test_recover_of_a_journal_where_everything_finished_is_empty(journal: Journal) -> None:
    with_status(journal, ApplicationStatus.TERMINATED)

    assert journal.recover() == RecoveryPlan(unfinished_deploys=(), to_reattach=(), unfinished_terminations=())
    assert journal.recover().is_empty


def test_resources_to_find_are_those_that_may_still_exist(journal: Journal) -> None:
    deploying(journal)
    journal.record_component(APP, (APP,), component_class="Compound", host="host-a", state=State.STARTED)
    for name, state in [("created", State.CREATED), ("started", State.STARTED), ("terminating", State.TERMINATING),
                        ("failed", State.FAILED), ("terminated", State.TERMINATED)]:
        record_vm(journal, name, state)

    [recovery] = journal.recover().unfinished_deploys

    assert [c.path[-1] for c in recovery.resources_to_find] == ["created", "started", "terminating", "failed"]


# -- threads ---------------------------------------------------------------------------------------
def test_many_threads_may_write_at_once(journal: Journal) -> None:
    deploying(journal)
    barrier = threading.Barrier(8)

    def write(thread: int) -> None:
        barrier.wait(timeout=10)
        for index in range(25):
            record_vm(journal, f"vm{thread}-{index}")
            journal.record_state(APP, (APP, f"vm{thread}-{index}"), State.STARTED)

    threads = [threading.Thread(target=write, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    components = journal.components(APP)
    assert len(components) == 200
    assert {c.state for c in components} == {State.STARTED}


# -- crash safety with a real kill -9 --------------------------------------------------------------
def _vm_path(index: int) -> tuple[str, ...]:
    return (APP, f"vm{index}")


def _uuid(index: int, generation: int = 0) -> str:
    return f"libvirt:qemu:///system:00000000-0000-4000-8000-{generation:06d}{index:06d}"


def _deploy_steps(vms: int) -> tuple[Callable[[Journal], object], ...]:
    """What a daemon journals while it deploys ``vms`` virtual machines, one transaction per step."""
    call = operator.methodcaller
    steps: list[Callable[[Journal], object]] = [
        call("begin_deploy", APP, DESCRIPTION, requested_by="alice", host="host-a"),
        call("record_component", APP, (APP,), component_class="Compound", host="host-a", state=State.CREATED),
        call("record_placement", APP, (APP, "remote"), "host-b"),
    ]
    steps += [call("record_component", APP, _vm_path(i), component_class="VM", host="host-a", state=State.CREATED,
                   resource=_uuid(i)) for i in range(vms)]
    steps += [call("record_state", APP, _vm_path(i), State.DEPLOYED) for i in range(vms)]
    steps += [call("record_state", APP, _vm_path(i), State.STARTED) for i in range(vms)]
    # vm2's domain crashes and a restarter re-creates it under a new UUID.
    steps += [
        call("record_state", APP, _vm_path(2), State.FAILED, CRASHED),
        call("record_component", APP, _vm_path(2), component_class="VM", host="host-a", state=State.CREATED,
             resource=_uuid(2, generation=1)),
        call("record_state", APP, _vm_path(2), State.STARTED),
        call("record_state", APP, (APP,), State.STARTED),
        call("mark_running", APP),
    ]
    return tuple(steps)


VMS: Final = 6
STEPS: Final = _deploy_steps(VMS)


def run_steps_in_child() -> None:
    """The child process: journal STEPS, printing each step's number once it is committed.

    ``argv``: the state dir, then the step after which to block on stdin until killed (0: never).
    """
    state_dir, pause_after = Path(sys.argv[1]), int(sys.argv[2])
    with open_journal(state_dir, clock=Ticker()) as journal:
        for number, step in enumerate(STEPS, 1):
            step(journal)
            print(number, flush=True)
            if number == pause_after:
                sys.stdin.readline()


class Child:
    """A child process journalling STEPS, and the lines it has printed so far."""

    def __init__(self, state_dir: Path, pause_after: int) -> None:
        code = "from tests.actors.test_journal import run_steps_in_child; run_steps_in_child()"
        self.process = subprocess.Popen(
            [sys.executable, "-c", code, str(state_dir), str(pause_after)],
            cwd=REPOSITORY, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line.strip())
        self._lines.put(None)

    def wait_for_step(self, number: int, *, timeout: float = 30.0) -> None:
        """Block until the child says step ``number`` is committed."""
        while True:
            line = self._lines.get(timeout=timeout)
            if line is None:
                self.process.wait(timeout=timeout)
                assert self.process.stderr is not None
                pytest.fail(f"the child exited with {self.process.returncode} before step {number}:\n"
                            f"{self.process.stderr.read()}")
            if int(line) == number:
                return

    def kill(self) -> None:
        """SIGKILL, the way a crash or the OOM killer ends a daemon: no cleanup runs."""
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL
        self._reader.join(timeout=30)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._reader.join(timeout=30)
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def start_child() -> Iterator[Callable[[Path, int], Child]]:
    children: list[Child] = []

    def start(state_dir: Path, pause_after: int) -> Child:
        children.append(Child(state_dir, pause_after))
        return children[-1]

    yield start
    for child in children:
        child.close()


@pytest.fixture(scope="module")
def snapshots_after_each_step(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[object, ...]]:
    """What the journal holds after steps 1..n of STEPS, replayed in this process; index n."""
    result: list[tuple[object, ...]] = [()]
    with open_journal(tmp_path_factory.mktemp("replay"), clock=Ticker()) as journal:
        for step in STEPS:
            step(journal)
            result.append(snapshot(journal))
    return result


def assert_sqlite_file_is_sound(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []


@pytest.mark.parametrize("killed_after", [1, 3, 13], ids=["deploy-begun", "placement-recorded", "vms-deploying"])
def test_a_daemon_killed_between_two_steps_of_a_deploy_recovers_exactly_the_steps_it_committed(
        tmp_path: Path, start_child: Callable[[Path, int], Child], killed_after: int,
        snapshots_after_each_step: list[tuple[object, ...]]) -> None:
    child = start_child(tmp_path, killed_after)
    child.wait_for_step(killed_after)

    child.kill()

    assert_sqlite_file_is_sound(tmp_path / JOURNAL_FILE_NAME)
    with open_journal(tmp_path) as journal:
        assert snapshot(journal) == snapshots_after_each_step[killed_after]
        [recovery] = journal.recover().unfinished_deploys
    assert recovery.application.status is ApplicationStatus.DEPLOYING
    assert recovery.application.description_text == DESCRIPTION


def test_a_daemon_killed_while_its_vms_deploy_leaves_a_plan_with_each_vm_state_and_resource(
        tmp_path: Path, start_child: Callable[[Path, int], Child]) -> None:
    child = start_child(tmp_path, 13)  # begin, root, placement, 6 VMs created, vm0..vm3 deployed
    child.wait_for_step(13)

    child.kill()

    with open_journal(tmp_path) as journal:
        plan = journal.recover()
    assert (plan.to_reattach, plan.unfinished_terminations) == ((), ())
    [recovery] = plan.unfinished_deploys
    assert [(c.path, c.state, c.resource) for c in recovery.resources_to_find] == [
        (_vm_path(i), State.DEPLOYED if i < 4 else State.CREATED, _uuid(i)) for i in range(VMS)]
    assert recovery.placements[0].path == (APP, "remote")


@pytest.mark.parametrize("killed_after", [1, 7, 16, 20])
def test_a_daemon_killed_while_it_writes_recovers_a_whole_prefix_of_its_steps_and_nothing_half_written(
        tmp_path: Path, start_child: Callable[[Path, int], Child], killed_after: int,
        snapshots_after_each_step: list[tuple[object, ...]]) -> None:
    child = start_child(tmp_path, 0)  # never pauses: the kill lands while it writes the next steps
    child.wait_for_step(killed_after)

    child.kill()

    assert_sqlite_file_is_sound(tmp_path / JOURNAL_FILE_NAME)
    with open_journal(tmp_path) as journal:
        recovered = snapshot(journal)
    committed = [n for n in range(killed_after, len(STEPS) + 1) if snapshots_after_each_step[n] == recovered]
    assert committed, "the recovered journal is not the result of any whole number of steps"


def test_a_daemon_killed_after_its_deploy_reattaches_every_vm_and_creates_nothing_twice(
        tmp_path: Path, start_child: Callable[[Path, int], Child],
        snapshots_after_each_step: list[tuple[object, ...]]) -> None:
    child = start_child(tmp_path, len(STEPS))
    child.wait_for_step(len(STEPS))

    child.kill()

    with open_journal(tmp_path) as journal:
        assert snapshot(journal) == snapshots_after_each_step[-1]
        plan = journal.recover()
        with pytest.raises(DuplicateApplication):
            journal.begin_deploy(APP, DESCRIPTION, requested_by="alice", host="host-a")
        history = journal.records(APP)
    assert (plan.unfinished_deploys, plan.unfinished_terminations) == ((), ())
    [recovery] = plan.to_reattach
    assert isinstance(recovery, ApplicationRecovery)
    assert recovery.application.status is ApplicationStatus.RUNNING
    assert [(c.path, c.state, c.resource) for c in recovery.resources_to_find] == [
        (_vm_path(i), State.STARTED, _uuid(i, generation=1 if i == 2 else 0)) for i in range(VMS)]
    assert [(h.subject, h.record) for h in history] == [(_vm_path(2), CRASHED)]


# -- notes: lifecycle changes written in batches ---------------------------------------------------------------
def test_a_note_is_seen_by_the_next_read_and_written_in_the_order_it_was_made(journal: Journal) -> None:
    deploying(journal)
    journal.note_component(APP, (APP, "vm0"), component_class="VM", host="host-a", state=State.CREATED)
    # A resource recorded at once after the note: the note must not overwrite it when written later.
    journal.record_component(APP, (APP, "vm0"), component_class="VM", host="host-a", state=State.CREATED,
                             resource="libvirt:qemu:///system#1234")
    journal.note_state(APP, (APP, "vm0"), State.FAILED, CRASHED)

    [vm] = journal.components(APP)

    assert (vm.state, vm.resource, vm.record) == (State.FAILED, "libvirt:qemu:///system#1234", CRASHED)
    assert [entry.record for entry in journal.records(APP)] == [CRASHED]


def test_notes_left_when_the_journal_closes_are_written(tmp_path: Path, ticker: Ticker) -> None:
    with open_journal(tmp_path, clock=ticker) as journal:
        deploying(journal)
        for number in range(200):
            journal.note_component(APP, (APP, f"vm{number}"), component_class="VM", host="host-a",
                                   state=State.CREATED)
            journal.note_state(APP, (APP, f"vm{number}"), State.STARTED)

    with open_journal(tmp_path, clock=ticker) as reopened:
        states = {entry.path[-1]: entry.state for entry in reopened.components(APP)}

    assert states == {f"vm{number}": State.STARTED for number in range(200)}


def test_a_note_about_an_application_or_component_the_journal_does_not_know_is_dropped(journal: Journal) -> None:
    deploying(journal)
    journal.note_component("other", ("other", "vm0"), component_class="VM", host="host-a", state=State.CREATED)
    journal.note_state(APP, (APP, "ghost"), State.STARTED)
    record_vm(journal, "vm0")

    assert [entry.path for entry in journal.components(APP)] == [(APP, "vm0")]


def test_a_noted_resource_is_kept_by_the_state_notes_that_follow(journal: Journal) -> None:
    deploying(journal)
    journal.note_component(APP, (APP, "vm0"), component_class="VM", host="host-a", state=State.CREATED)
    journal.note_resource(APP, (APP, "vm0"), "libvirt:test:///default#1234")
    journal.note_state(APP, (APP, "vm0"), State.STARTED)

    [vm] = journal.components(APP)

    assert (vm.state, vm.resource) == (State.STARTED, "libvirt:test:///default#1234")
