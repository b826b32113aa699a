"""Journal: a daemon's crash-safe record of its applications, components and placements.

Design rule 6, *journal first*: the daemon writes what it is about to do, then does it. After a
crash (kill -9, power cut) :meth:`Journal.recover` says which applications were half deployed,
which were running and which were half torn down, and for each component its last state and the
handle of the resource it owns, so the daemon can re-attach to what still exists, report what was
lost, and never create a second copy (design rule 5).

The journal is one SQLite file, ``journal.sqlite3`` in the daemon's state directory, in WAL mode
with ``synchronous=FULL``: a method that returned has reached the disk, and a crash leaves every
operation either wholly written or not at all (each is one transaction). The exception is notes
(``note_component``, ``note_state``: the lifecycle changes ``status`` shows, which recovery does
not rely on): a writer thread lets them gather for 50 ms and commits them in one transaction, so
a deployment of 1,000 components costs a few disk syncs, not 3,000; a crash may lose the last
moment's notes. One connection serves the whole daemon behind a lock, so any thread may call any
method.

Values are stored as plain columns: states and statuses by their enum value, component paths as
JSON arrays of names, termination records as their four fields. ``sqlite3 journal.sqlite3`` is
therefore enough to read a journal by hand. An application's description is kept as the tree
the daemon runs (msgpack, ``description_tree``) and as .sf text; when a client sent the tree alone,
the daemon writes the text once the deployment is over, so for that moment the text is empty.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sd_actors.actors._errors import DeploymentError, UnknownComponent
from sd_actors.actors._events import State
from sd_actors.actors._records import TerminationRecord

if TYPE_CHECKING:
    from sd_actors.descriptions import ComponentDescription

JOURNAL_FILE_NAME: Final = "journal.sqlite3"

# How long a write waits for another connection to the same file (``sqlite3`` by hand, a
# ``status`` reader) before giving up; the daemon itself only ever has one connection.
_BUSY_TIMEOUT_SECONDS: Final = 10.0

# How long the writer lets notes gather before it commits them together; a crash loses at most
# this moment's notes (and those being committed).
_NOTES_GATHER_SECONDS: Final = 0.05

# Each entry upgrades the schema by one version: _MIGRATIONS[0] makes version 1 from an empty
# file, _MIGRATIONS[1] will make version 2 from version 1, and so on. Statements, not one script,
# because sqlite3's executescript() commits first and would break the migration's transaction.
# The CHECK lists spell out ApplicationStatus and State; a test records every member of both.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        """CREATE TABLE applications (
            name TEXT PRIMARY KEY,
            status TEXT NOT NULL
                CHECK (status IN ('deploying', 'running', 'terminating', 'terminated', 'failed')),
            description_text TEXT NOT NULL,
            requested_by TEXT NOT NULL,
            host TEXT NOT NULL,
            created REAL NOT NULL,
            updated REAL NOT NULL,
            record_id INTEGER REFERENCES termination_records (id) ON DELETE SET NULL
        )""",
        """CREATE TABLE components (
            seq INTEGER PRIMARY KEY,
            app TEXT NOT NULL REFERENCES applications (name) ON DELETE CASCADE,
            path TEXT NOT NULL,
            component_class TEXT NOT NULL,
            host TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('created', 'deployed', 'started', 'terminating', 'terminated', 'failed')),
            resource TEXT,
            updated REAL NOT NULL,
            record_id INTEGER REFERENCES termination_records (id) ON DELETE SET NULL,
            UNIQUE (app, path)
        )""",
        """CREATE TABLE placements (
            app TEXT NOT NULL REFERENCES applications (name) ON DELETE CASCADE,
            path TEXT NOT NULL,
            host TEXT NOT NULL,
            updated REAL NOT NULL,
            PRIMARY KEY (app, path)
        )""",
        # subject: the component whose state change the record came with, NULL for the
        # application itself; origin: TerminationRecord.path, where the termination started.
        """CREATE TABLE termination_records (
            id INTEGER PRIMARY KEY,
            app TEXT NOT NULL REFERENCES applications (name) ON DELETE CASCADE,
            subject TEXT,
            time REAL NOT NULL,
            kind TEXT NOT NULL,
            description TEXT NOT NULL,
            origin TEXT NOT NULL,
            cause TEXT
        )""",
        "CREATE INDEX termination_records_by_app ON termination_records (app, id)",
        "INSERT INTO schema_version (version) VALUES (0)",
    ),
    # 2: the description as the daemon runs it, encode_description bytes (descriptions/_codec.py).
    # A client may send only those: description_text is then '' until the daemon has written the
    # text itself (fill_description_text), after the deployment.
    ("ALTER TABLE applications ADD COLUMN description_tree BLOB",),
    # 3: deleting a termination record (a finished application's, when its name is deployed again)
    # sets the rows that name it to NULL: without these indexes SQLite scanned both tables per
    # record, reading every application's description (1,000 records of a 1,000-VM pool, ten
    # earlier applications: 2 s for `up`).
    ("CREATE INDEX components_by_record ON components (record_id)",
     "CREATE INDEX applications_by_record ON applications (record_id)"),
)

SCHEMA_VERSION: Final = len(_MIGRATIONS)


# -- errors ----------------------------------------------------------------------------------------
class JournalError(DeploymentError):
    """The journal cannot be opened, or refuses an operation; nothing was written."""


class JournalTooNew(JournalError):
    """The journal file was written by a newer sd-actors, whose schema this one cannot read."""

    def __init__(self, path: Path, *, found: int, supported: int) -> None:
        super().__init__(
            f"{path}: the journal has schema version {found}, but this sd-actors reads versions up to "
            f"{supported}; upgrade sd-actors, or give the daemon another --state-dir"
        )
        self.path = path
        self.found = found
        self.supported = supported


class ApplicationStatus(enum.Enum):
    """Where an application is, as the journal records it: deploying → running → terminating → terminated
    or failed."""

    DEPLOYING = "deploying"
    RUNNING = "running"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """Finished: nothing of the application should exist any more."""
        return self in (ApplicationStatus.TERMINATED, ApplicationStatus.FAILED)


class DuplicateApplication(JournalError):
    """An application of that name exists and is not finished, so deploying it again would make a copy."""

    def __init__(self, app: str, status: ApplicationStatus, *, host: str) -> None:
        if status is ApplicationStatus.TERMINATING:
            fix = f"wait until `sd-actors down {app}` has finished"
        else:
            fix = f"run `sd-actors down {app}` first, or deploy the new one under another --name"
        super().__init__(f"application {app!r} is already {status.value} on {host}; {fix}")
        self.app = app
        self.status = status
        self.host = host


class UnknownApplication(JournalError):
    """No application of that name is in the journal."""

    def __init__(self, app: str) -> None:
        super().__init__(f"no application {app!r} in the journal; `sd-actors ls` lists the known ones")
        self.app = app


class WrongStatus(JournalError):
    """The operation does not fit the application's status (a bug in the caller, or a race with `down`)."""

    def __init__(self, app: str, status: ApplicationStatus, *, operation: str,
                 expected: Sequence[ApplicationStatus]) -> None:
        wanted = " or ".join(s.value for s in expected)
        super().__init__(f"application {app!r} is {status.value}; {operation}() needs it {wanted}")
        self.app = app
        self.status = status
        self.operation = operation
        self.expected = tuple(expected)


# -- what the journal returns ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationEntry:
    """One application as the journal last recorded it.

    :param record: the termination record that came with the current status (set by
        :meth:`Journal.begin_terminate` and :meth:`Journal.mark_terminated`), else ``None``.
    """

    name: str
    status: ApplicationStatus
    description_text: str
    """The resolved description in .sf notation; '' while only ``description_tree`` is known."""
    requested_by: str
    host: str
    created: float
    updated: float
    record: TerminationRecord | None
    description_tree: bytes | None = None
    """The same description as ``encode_description`` bytes, when the deployment came with them."""

    def description(self) -> ComponentDescription:
        """The description to deploy again: the tree decoded, else the text parsed.

        :raises DescriptionError: neither can be read back (UndecodableDescription for a tree).
        """
        from sd_actors.descriptions import decode_description, parse_string  # the journal needs them only here

        if self.description_tree:
            return decode_description(self.description_tree)
        return parse_string(self.description_text, filename=f"<{self.name}>", use_library=False)

    def text(self) -> str:
        """``description_text``, or the text of the tree when it has not been written yet."""
        if self.description_text or not self.description_tree:
            return self.description_text
        from sd_actors.descriptions import to_sf

        return to_sf(self.description())


@dataclass(frozen=True, slots=True, kw_only=True)
class ComponentEntry:
    """One component as the journal last recorded it.

    :param resource: the opaque handle its owner needs to find what it created after a crash
        (``"libvirt:qemu:///system:<domain uuid>"``), or ``None`` if it owns nothing outside the
        daemon's memory.
    :param record: the termination record that came with the current state, else ``None``.
    """

    app: str
    path: tuple[str, ...]
    component_class: str
    host: str
    state: State
    resource: str | None
    updated: float
    record: TerminationRecord | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacementEntry:
    """The subtree rooted at ``path`` is run by ``host``'s daemon."""

    app: str
    path: tuple[str, ...]
    host: str
    updated: float


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordEntry:
    """A termination record kept with a state change; ``subject`` is ``None`` for the application itself."""

    app: str
    subject: tuple[str, ...] | None
    time: float
    record: TerminationRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplicationRecovery:
    """One unfinished application after a crash, with everything the daemon needs to act on it.

    :param components: every recorded component, in the order they were first recorded (the
        deployment order; tear down in reverse).
    :param placements: the subtrees other daemons run; those daemons journal their own
        components, so this daemon reconnects to them rather than looking for their resources.
    """

    application: ApplicationEntry
    components: tuple[ComponentEntry, ...]
    placements: tuple[PlacementEntry, ...]

    @property
    def resources_to_find(self) -> tuple[ComponentEntry, ...]:
        """Components whose resource may still exist: the daemon looks each one up by its handle.

        Found: re-attach to it (or finish tearing it down). Missing: it was lost while the daemon
        was down, and is reported. A TERMINATED component is left out because that state is
        recorded only once its teardown has finished (see :meth:`Journal.record_state`); a
        FAILED one stays in because a failed virtual machine's domain or volumes may remain.
        """
        return tuple(c for c in self.components if c.resource is not None and c.state is not State.TERMINATED)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryPlan:
    """What a daemon restarted after a crash must do, from its journal. Finished applications are left out.

    The journal records intent, not reality: only the daemon can ask libvirt (or another owner)
    whether a resource still exists, so each application comes with its components' last states
    and resource handles and the daemon decides per component. Because a component's handle is
    written *before* its resource is created (journal first), a resource can never exist without
    the journal knowing where to look, and nothing needs to be created twice.

    :param unfinished_deploys: applications that were ``deploying``. ``up`` had been asked and
        neither finished nor failed. Either **resume** — deploy ``description_text`` again,
        re-attaching to every component in :attr:`ApplicationRecovery.resources_to_find` that
        still exists and creating only the rest — or **roll back** — terminate what still exists
        in reverse order, then :meth:`Journal.mark_terminated` with an abnormal record saying the
        daemon crashed during the deploy. Resuming is the better default: the user asked for the
        application and has not asked for it to go (design rule 2), and it is the same re-attach
        the daemon does for running applications. Roll back when resuming cannot work (the
        description no longer resolves against this daemon's component types). The CLI that
        asked has lost its connection either way, so the outcome belongs in ``status``.
    :param to_reattach: applications that were ``running``: re-attach to each component whose
        resource still exists; a missing one goes to FAILED with an abnormal record ("lost while
        the daemon was down") and its parent's policy decides, as for any failure.
    :param unfinished_terminations: applications that were ``terminating``: ``down`` had been
        asked (design rule 2: finish it, do not repair), so tear down whatever still exists, in
        reverse order, then :meth:`Journal.mark_terminated` with the record
        :meth:`Journal.begin_terminate` kept (``application.record``).
    """

    unfinished_deploys: tuple[ApplicationRecovery, ...]
    to_reattach: tuple[ApplicationRecovery, ...]
    unfinished_terminations: tuple[ApplicationRecovery, ...]

    @property
    def is_empty(self) -> bool:
        """Nothing to recover: every application in the journal had finished."""
        return not (self.unfinished_deploys or self.to_reattach or self.unfinished_terminations)


# Statuses whose resources may exist: they block a new deploy and are what recover() covers.
_UNFINISHED: Final = (ApplicationStatus.DEPLOYING, ApplicationStatus.RUNNING, ApplicationStatus.TERMINATING)

_SELECT_APPLICATIONS_WITH: Final = (
    "SELECT a.name, a.status, {descriptions}, a.requested_by, a.host, a.created, a.updated,"
    " r.kind, r.description, r.origin, r.cause"
    " FROM applications AS a LEFT JOIN termination_records AS r ON r.id = a.record_id"
)
_SELECT_APPLICATIONS: Final = _SELECT_APPLICATIONS_WITH.format(descriptions="a.description_text, a.description_tree")
_SELECT_UNDESCRIBED_APPLICATIONS: Final = _SELECT_APPLICATIONS_WITH.format(
    descriptions="'' AS description_text, NULL AS description_tree")


# The statements of notes (Journal.note_*): a note is one of them and its parameters, or a function
# for the rare note that needs several statements (a state with a termination record).
_NOTE_COMPONENT: Final = (  # nothing if the application is gone meanwhile; else as _upsert_component
    "INSERT INTO components (app, path, component_class, host, state, resource, updated, record_id)"
    " SELECT ?, ?, ?, ?, ?, NULL, ?, NULL WHERE EXISTS (SELECT 1 FROM applications WHERE name = ?)"
    " ON CONFLICT (app, path) DO UPDATE SET component_class = excluded.component_class,"
    " host = excluded.host, state = excluded.state, resource = excluded.resource,"
    " updated = excluded.updated, record_id = NULL")
_NOTE_STATE: Final = "UPDATE components SET state = ?, updated = ?, record_id = NULL WHERE app = ? AND path = ?"
_NOTE_RESOURCE: Final = "UPDATE components SET resource = ?, updated = ? WHERE app = ? AND path = ?"
_Note = tuple[str, tuple[object, ...]] | Callable[[sqlite3.Connection], None]


# -- the journal -----------------------------------------------------------------------------------
class Journal:
    """A daemon's crash-safe record in SQLite. Open one with :func:`open_journal`.

    Every method is one transaction, safe to call from any thread. The daemon calls a method
    *before* it acts (journal first), except those named ``mark_*``, which record that an act
    has finished. Methods that change something raise :class:`JournalError` subclasses when the
    change does not fit, and then write nothing.

    :param clock: wall-clock seconds for the ``created``/``updated``/``time`` columns; wall time,
        not monotonic, because the journal outlives the process and people read these times.
    """

    def __init__(self, connection: sqlite3.Connection, *, path: Path, clock: Callable[[], float]) -> None:
        self._connection: sqlite3.Connection | None = connection
        self._lock = threading.Lock()
        self._clock = clock
        self.path = path
        # Notes (note_component, note_state) wait here for the writer thread, which commits all
        # that are waiting in one transaction: one disk sync for many lifecycle changes.
        self._notes: list[_Note] = []
        self._notes_changed = threading.Condition()
        self._closing = False
        self._writer = threading.Thread(target=self._write_notes, name="sd-actors-journal", daemon=True)
        self._writer.start()

    def close(self) -> None:
        """Write what is noted, close the connection; any later call raises :class:`JournalError`.
        Closing twice is harmless."""
        with self._notes_changed:
            self._closing = True
            self._notes_changed.notify_all()
        if self._writer is not threading.current_thread():
            self._writer.join()
        with self._lock:
            if self._connection is not None:
                self._write_noted()
                self._connection.close()
                self._connection = None

    # -- notes: lifecycle changes recovery does not depend on ------------------------------------
    def note_component(self, app: str, path: tuple[str, ...], *, component_class: str, host: str,
                       state: State) -> None:
        """:meth:`record_component` without a resource, written a moment later with other notes.

        For what :meth:`recover` does not rely on: it decides from the application's status and
        the components' resources, which are always written at once. A crash may lose the notes
        of the last moment (``status`` after a restart then shows an older state); every other
        method writes the notes made before it first, so the journal's order is kept.
        """
        encoded = _encode_path(path)
        value, updated = State(state).value, self._clock()
        self._note((_NOTE_COMPONENT, (app, encoded, component_class, host, value, updated, app)))

    def note_state(self, app: str, path: tuple[str, ...], state: State,
                   record: TerminationRecord | None = None) -> None:
        """:meth:`record_state`, written a moment later with other notes (see :meth:`note_component`)."""
        encoded = _encode_path(path)
        value, updated = State(state).value, self._clock()

        if record is None:  # most notes: one statement, as _update_state would do
            self._note((_NOTE_STATE, (value, updated, app, encoded)))
            return

        def write(db: sqlite3.Connection) -> None:
            row = db.execute("SELECT seq FROM components WHERE app = ? AND path = ?", (app, encoded)).fetchone()
            if row is not None:
                self._update_state(db, app, encoded, row["seq"], value, record, updated)

        self._note(write)

    def note_resource(self, app: str, path: tuple[str, ...], resource: str | None) -> None:
        """Record what a component holds, written a moment later with other notes: for a resource
        its owner finds again without the journal (see ``ComponentContext.set_resource``)."""
        encoded = _encode_path(path)
        updated = self._clock()

        self._note((_NOTE_RESOURCE, (resource, updated, app, encoded)))

    def flush(self) -> None:
        """Write every note made so far, now."""
        with self._lock:
            self._write_noted()

    def _note(self, note: _Note) -> None:
        with self._notes_changed:
            if self._closing:
                raise JournalError(f"{self.path}: the journal is closed")
            self._notes.append(note)
            if len(self._notes) == 1:  # the writer waits for the first; the others join it
                self._notes_changed.notify()

    def _write_notes(self) -> None:
        while True:
            with self._notes_changed:
                while not self._notes and not self._closing:
                    self._notes_changed.wait()
                # A moment's notes in one transaction: one disk sync, not one per few notes.
                if not self._closing:
                    self._notes_changed.wait(_NOTES_GATHER_SECONDS)
                if self._closing:
                    return  # close() writes what is left
            with self._lock:
                self._write_noted()

    def _write_noted(self) -> None:
        """Commit the waiting notes in one transaction; the caller holds the lock."""
        with self._notes_changed:
            notes, self._notes = self._notes, []
        db = self._connection
        if not notes or db is None:
            return
        with _atomically(db):
            start = 0
            while start < len(notes):
                note = notes[start]
                if not isinstance(note, tuple):
                    note(db)
                    start += 1
                    continue
                # A run of notes of one statement (a step of 1,000 VMs: 1,000 in a row) is one
                # executemany: SQLite binds each row without a round through Python.
                statement, rows = note[0], [note[1]]
                end = start + 1
                while end < len(notes) and isinstance(following := notes[end], tuple) and following[0] is statement:
                    rows.append(following[1])
                    end += 1
                db.executemany(statement, rows)
                start = end

    # -- applications ----------------------------------------------------------------------------
    def begin_deploy(self, app: str, description_text: str, *, requested_by: str, host: str,
                     description_tree: bytes | None = None) -> None:
        """Record that ``app`` is about to be deployed from ``description_text`` (status ``deploying``).

        Called when a Deploy request arrives, before any component is created: this is how
        ``up`` never creates twice (design rule 5). An earlier, finished application of the same
        name is replaced, with its components, placements and records.

        :param description_text: the resolved description as submitted, kept so a deploy cut
            short by a crash can be resumed and ``status`` can show what was asked for; '' when
            ``description_tree`` holds it (the text follows with :meth:`fill_description_text`).
        :param description_tree: the same description as ``encode_description`` bytes: what a
            restart deploys again, when given.
        :param requested_by: who asked (a CLI user's key name, a peer daemon).
        :param host: the daemon that accepted the request.
        :raises DuplicateApplication: an application of that name is deploying, running or
            terminating (its resources still exist while it terminates, so a new deploy would
            overlap the old one).
        """
        _check_name(app)
        with self._transaction() as db:
            status = self._status_or_none(db, app)
            if status is not None and not status.is_final:
                row = db.execute("SELECT host FROM applications WHERE name = ?", (app,)).fetchone()
                raise DuplicateApplication(app, status, host=row["host"])
            now = self._clock()
            db.execute("DELETE FROM applications WHERE name = ?", (app,))
            db.execute(
                "INSERT INTO applications (name, status, description_text, description_tree, requested_by, host,"
                " created, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (app, ApplicationStatus.DEPLOYING.value, description_text, description_tree or None, requested_by,
                 host, now, now),
            )

    def mark_running(self, app: str) -> None:
        """Record that every component of ``app`` has started (status ``running``).

        Called once the root has started, after the deploy is done and before the CLI is told.

        :raises WrongStatus: ``app`` is not deploying.
        """
        with self._transaction() as db:
            self._require_status(db, app, "mark_running", (ApplicationStatus.DEPLOYING,))
            self._set_status(db, app, ApplicationStatus.RUNNING, record_id=None)

    def replace_description(self, app: str, description_text: str, description_tree: bytes | None = None) -> None:
        """Record that running ``app`` is about to take a changed description (``up`` again).

        Called before its components are given the changes, and again with the old description
        when they could not take them: a daemon restarted afterwards re-deploys from this one.

        :raises WrongStatus: ``app`` is not running.
        """
        with self._transaction() as db:
            self._require_status(db, app, "replace_description", (ApplicationStatus.RUNNING,))
            db.execute("UPDATE applications SET description_text = ?, description_tree = ?, updated = ? WHERE name = ?",
                       (description_text, description_tree or None, self._clock(), app))

    def fill_description_text(self, app: str, description_tree: bytes, description_text: str) -> None:
        """Write the text of a description journaled as a tree alone (for ``sqlite3`` readers and
        older tools). Nothing changes unless ``app``'s row still has that tree and no text."""
        with self._transaction() as db:
            db.execute("UPDATE applications SET description_text = ? WHERE name = ? AND description_text = ''"
                       " AND description_tree = ?", (description_text, app, description_tree))

    def begin_terminate(self, app: str, record: TerminationRecord) -> None:
        """Record that ``app`` is about to be terminated with ``record`` (status ``terminating``).

        Called before the root is told to terminate: on ``down`` (a normal record), or when a
        failure means the whole application goes (shared fate, a failed deploy rolled back).
        Calling it again while terminating replaces the record.

        :raises WrongStatus: ``app`` has already finished.
        """
        with self._transaction() as db:
            self._require_status(db, app, "begin_terminate", _UNFINISHED)
            record_id = self._insert_record(db, app, None, record)
            self._set_status(db, app, ApplicationStatus.TERMINATING, record_id=record_id)

    def mark_terminated(self, app: str, record: TerminationRecord) -> None:
        """Record that ``app`` is gone: status ``terminated`` for a normal ``record``, ``failed`` otherwise.

        Called after the last component has terminated and its resources are released (or
        found already gone during recovery).

        :raises WrongStatus: ``app`` has already finished.
        """
        status = ApplicationStatus.TERMINATED if record.is_normal else ApplicationStatus.FAILED
        with self._transaction() as db:
            self._require_status(db, app, "mark_terminated", _UNFINISHED)
            record_id = self._insert_record(db, app, None, record)
            self._set_status(db, app, status, record_id=record_id)

    def application(self, app: str) -> ApplicationEntry:
        """The entry for ``app``; called by ``status APP`` and before acting on a request naming it.

        :raises UnknownApplication: no such application.
        """
        with self._transaction(write=False) as db:
            row = db.execute(_SELECT_APPLICATIONS + " WHERE a.name = ?", (app,)).fetchone()
        if row is None:
            raise UnknownApplication(app)
        return _application_entry(row)

    def applications(self, *, with_descriptions: bool = True) -> list[ApplicationEntry]:
        """Every application, finished ones included, oldest first; called by ``ls`` and ``status``.

        :param with_descriptions: False leaves the descriptions out (``description_text`` '' and
            ``description_tree`` None): a 1,000-VM pool's are 0.7 MB, and ``status`` needs none.
        """
        select = _SELECT_APPLICATIONS if with_descriptions else _SELECT_UNDESCRIBED_APPLICATIONS
        with self._transaction(write=False) as db:
            rows = db.execute(select + " ORDER BY a.created, a.name").fetchall()
        return [_application_entry(row) for row in rows]

    def forget(self, app: str) -> None:
        """Remove a finished application with its components, placements and records.

        Called when a person clears a failed application (design rule 3) or old entries are
        pruned. An unfinished application cannot be forgotten: its resources may exist, and the
        journal is how the daemon finds them.

        :raises UnknownApplication: no such application.
        :raises WrongStatus: ``app`` is deploying, running or terminating.
        """
        with self._transaction() as db:
            self._require_status(db, app, "forget", (ApplicationStatus.TERMINATED, ApplicationStatus.FAILED))
            db.execute("DELETE FROM applications WHERE name = ?", (app,))

    # -- components ------------------------------------------------------------------------------
    def record_component(self, app: str, path: tuple[str, ...], *, component_class: str, host: str,
                         state: State, resource: str | None = None) -> None:
        """Record a component, or replace everything recorded about it (its record becomes ``None``).

        Called before the component's actor is created, and again whenever its owner knows the
        handle of the resource it is about to make. Choose the handle *before* making the
        resource (libvirt takes the domain's UUID in its XML), so that after a crash the
        resource can be found even if the daemon died the instant it was made. Later state
        changes go through :meth:`record_state`, which keeps the resource.

        :param path: the component's complete name, ``("app", "web", "vm")``.
        :param resource: an opaque handle for the owner, ``"libvirt:qemu:///system:<uuid>"``;
            ``None`` if the component owns nothing outside the daemon's memory.
        :raises UnknownApplication: ``app`` was never begun with :meth:`begin_deploy`.
        """
        encoded = _encode_path(path)
        with self._transaction() as db:
            self._require_application(db, app)
            self._upsert_component(db, app, encoded, component_class, host, State(state).value, resource,
                                   self._clock())

    @staticmethod
    def _upsert_component(db: sqlite3.Connection, app: str, encoded: str, component_class: str, host: str,
                          state: str, resource: str | None, updated: float) -> None:
        db.execute(
            "INSERT INTO components (app, path, component_class, host, state, resource, updated, record_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, NULL)"
            " ON CONFLICT (app, path) DO UPDATE SET component_class = excluded.component_class,"
            " host = excluded.host, state = excluded.state, resource = excluded.resource,"
            " updated = excluded.updated, record_id = NULL",
            (app, encoded, component_class, host, state, resource, updated),
        )

    def record_state(self, app: str, path: tuple[str, ...], state: State,
                     record: TerminationRecord | None = None) -> None:
        """Record a component's new state, with the termination record that came with it, if any.

        Called before acting on the change: TERMINATING before its resources are released;
        TERMINATED only once they are (that is how :meth:`recover` knows there is nothing left to
        find); FAILED as soon as the failure is known, with its record. The record is kept in
        the component's history (:meth:`records`) and as its current record; a change without
        one clears the current record.

        :raises UnknownComponent: the component was never recorded with :meth:`record_component`.
        """
        encoded = _encode_path(path)
        with self._transaction() as db:
            row = db.execute("SELECT seq FROM components WHERE app = ? AND path = ?", (app, encoded)).fetchone()
            if row is None:
                self._require_application(db, app)
                raise UnknownComponent(
                    f"application {app!r} has no component {':'.join(path)!r} in the journal;"
                    " record it with record_component() first"
                )
            self._update_state(db, app, encoded, row["seq"], State(state).value, record)

    def _update_state(self, db: sqlite3.Connection, app: str, encoded: str, seq: int, state: str,
                      record: TerminationRecord | None, noted: float | None = None) -> None:
        """``noted``: when a note was made (its record's time too); None: now."""
        record_id = None if record is None else self._insert_record(db, app, encoded, record, noted)
        db.execute("UPDATE components SET state = ?, updated = ?, record_id = ? WHERE seq = ?",
                   (state, self._clock() if noted is None else noted, record_id, seq))

    def components(self, app: str) -> list[ComponentEntry]:
        """``app``'s components in the order they were first recorded; called by ``status`` and :meth:`recover`.

        :raises UnknownApplication: no such application.
        """
        with self._transaction(write=False) as db:
            self._require_application(db, app)
            return self._components(db, app)

    # -- placements ------------------------------------------------------------------------------
    def record_placement(self, app: str, path: tuple[str, ...], host: str) -> None:
        """Record that ``host``'s daemon runs the subtree rooted at ``path`` (replacing an earlier host).

        Called once the placement is decided (``sfProcessHost``, a Scheduler, a re-placement
        after a host died) and before the Deploy request goes to that daemon.

        :raises UnknownApplication: no such application.
        """
        encoded = _encode_path(path)
        with self._transaction() as db:
            self._require_application(db, app)
            db.execute(
                "INSERT INTO placements (app, path, host, updated) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (app, path) DO UPDATE SET host = excluded.host, updated = excluded.updated",
                (app, encoded, host, self._clock()),
            )

    def placements(self, app: str) -> list[PlacementEntry]:
        """``app``'s placements, ordered by path.

        :raises UnknownApplication: no such application.
        """
        with self._transaction(write=False) as db:
            self._require_application(db, app)
            return self._placements(db, app)

    # -- history and recovery --------------------------------------------------------------------
    def records(self, app: str) -> list[RecordEntry]:
        """Every termination record kept for ``app`` and its components, oldest first.

        :raises UnknownApplication: no such application.
        """
        with self._transaction(write=False) as db:
            self._require_application(db, app)
            rows = db.execute(
                "SELECT app, subject, time, kind, description, origin, cause FROM termination_records"
                " WHERE app = ? ORDER BY id",
                (app,),
            ).fetchall()
        return [
            RecordEntry(
                app=row["app"],
                subject=None if row["subject"] is None else _decode_path(row["subject"]),
                time=row["time"],
                record=TerminationRecord(row["kind"], row["description"], _decode_path(row["origin"]), row["cause"]),
            )
            for row in rows
        ]

    def recover(self) -> RecoveryPlan:
        """What to do about the applications that had not finished; called once when the daemon starts.

        Reads one consistent snapshot and writes nothing: the daemon acts on the plan and
        records each step as usual, so a crash during recovery is recovered the same way.
        """
        with self._transaction(write=False) as db:
            rows = db.execute(
                _SELECT_APPLICATIONS + " WHERE a.status IN (?, ?, ?) ORDER BY a.created, a.name",
                tuple(s.value for s in _UNFINISHED),
            ).fetchall()
            by_status: dict[ApplicationStatus, list[ApplicationRecovery]] = {s: [] for s in _UNFINISHED}
            for row in rows:
                entry = _application_entry(row)
                by_status[entry.status].append(ApplicationRecovery(
                    application=entry,
                    components=tuple(self._components(db, entry.name)),
                    placements=tuple(self._placements(db, entry.name)),
                ))
        return RecoveryPlan(
            unfinished_deploys=tuple(by_status[ApplicationStatus.DEPLOYING]),
            to_reattach=tuple(by_status[ApplicationStatus.RUNNING]),
            unfinished_terminations=tuple(by_status[ApplicationStatus.TERMINATING]),
        )

    # -- internals -------------------------------------------------------------------------------
    @contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """One transaction under the lock (see :func:`_atomically`), after the notes made before it."""
        with self._lock:
            db = self._connection
            if db is None:
                raise JournalError(f"{self.path}: the journal is closed")
            self._write_noted()  # notes made before this call come first, as if written at once
            with _atomically(db, write=write):
                yield db

    @staticmethod
    def _status_or_none(db: sqlite3.Connection, app: str) -> ApplicationStatus | None:
        row = db.execute("SELECT status FROM applications WHERE name = ?", (app,)).fetchone()
        return None if row is None else ApplicationStatus(row["status"])

    def _require_application(self, db: sqlite3.Connection, app: str) -> ApplicationStatus:
        status = self._status_or_none(db, app)
        if status is None:
            raise UnknownApplication(app)
        return status

    def _require_status(self, db: sqlite3.Connection, app: str, operation: str,
                        expected: Sequence[ApplicationStatus]) -> ApplicationStatus:
        status = self._require_application(db, app)
        if status not in expected:
            raise WrongStatus(app, status, operation=operation, expected=expected)
        return status

    def _set_status(self, db: sqlite3.Connection, app: str, status: ApplicationStatus, *,
                    record_id: int | None) -> None:
        db.execute(
            "UPDATE applications SET status = ?, updated = ?, record_id = ? WHERE name = ?",
            (status.value, self._clock(), record_id, app),
        )

    def _insert_record(self, db: sqlite3.Connection, app: str, subject: str | None,
                       record: TerminationRecord, time: float | None = None) -> int:
        cursor = db.execute(
            "INSERT INTO termination_records (app, subject, time, kind, description, origin, cause)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (app, subject, self._clock() if time is None else time, record.kind, record.description,
             _encode_path(record.path, allow_empty=True), record.cause),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @staticmethod
    def _components(db: sqlite3.Connection, app: str) -> list[ComponentEntry]:
        rows = db.execute(
            "SELECT c.app, c.path, c.component_class, c.host, c.state, c.resource, c.updated,"
            " r.kind, r.description, r.origin, r.cause"
            " FROM components AS c LEFT JOIN termination_records AS r ON r.id = c.record_id"
            " WHERE c.app = ? ORDER BY c.seq",
            (app,),
        ).fetchall()
        return [
            ComponentEntry(
                app=row["app"],
                path=_decode_path(row["path"]),
                component_class=row["component_class"],
                host=row["host"],
                state=State(row["state"]),
                resource=row["resource"],
                updated=row["updated"],
                record=_joined_record(row),
            )
            for row in rows
        ]

    @staticmethod
    def _placements(db: sqlite3.Connection, app: str) -> list[PlacementEntry]:
        rows = db.execute("SELECT app, path, host, updated FROM placements WHERE app = ?", (app,)).fetchall()
        entries = [
            PlacementEntry(app=row["app"], path=_decode_path(row["path"]), host=row["host"], updated=row["updated"])
            for row in rows
        ]
        return sorted(entries, key=lambda entry: entry.path)


def _application_entry(row: sqlite3.Row) -> ApplicationEntry:
    return ApplicationEntry(
        name=row["name"],
        status=ApplicationStatus(row["status"]),
        description_text=row["description_text"],
        description_tree=row["description_tree"],
        requested_by=row["requested_by"],
        host=row["host"],
        created=row["created"],
        updated=row["updated"],
        record=_joined_record(row),
    )


def _joined_record(row: sqlite3.Row) -> TerminationRecord | None:
    if row["kind"] is None:
        return None
    return TerminationRecord(row["kind"], row["description"], _decode_path(row["origin"]), row["cause"])


def _check_name(app: object) -> None:
    if not isinstance(app, str) or not app:
        raise ValueError(f"an application name is a non-empty string, not {app!r}")


_ENCODED_PATHS: Final[dict[tuple[str, ...], str]] = {}
"""Paths already encoded: every component's path is encoded at each of its lifecycle changes."""
_ENCODED_PATHS_LIMIT: Final = 100_000


def _encode_path(path: object, *, allow_empty: bool = False) -> str:
    """A path as a JSON array: unambiguous whatever the names contain, and readable by hand."""
    try:
        encoded = _ENCODED_PATHS.get(path)  # type: ignore[call-overload]
    except TypeError:  # unhashable: not a path, as the checks below say
        encoded = None
    if encoded is not None:
        return encoded
    if not isinstance(path, tuple) or not all(isinstance(name, str) and name for name in path):
        raise ValueError(f"a component path is a tuple of non-empty names, like ('app', 'web'), not {path!r}")
    if not path and not allow_empty:
        raise ValueError("a component path names at least the application: ('app',)")
    encoded = json.dumps(path, ensure_ascii=False, separators=(",", ":"))
    if path:
        if len(_ENCODED_PATHS) >= _ENCODED_PATHS_LIMIT:
            _ENCODED_PATHS.clear()
        _ENCODED_PATHS[path] = encoded
    return encoded


def _decode_path(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


@contextmanager
def _atomically(db: sqlite3.Connection, *, write: bool = True) -> Iterator[sqlite3.Connection]:
    """One transaction, committed if the block ends normally, rolled back otherwise. IMMEDIATE for
    writes, so a writer never has to upgrade a read lock half way (which SQLite can refuse);
    deferred for reads, for a snapshot."""
    db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


# -- opening ---------------------------------------------------------------------------------------
@contextmanager
def open_journal(state_dir: Path, *, clock: Callable[[], float] = time.time) -> Iterator[Journal]:
    """Open (creating if needed) ``state_dir/journal.sqlite3``; close it on leaving the block.

    ``state_dir`` is created (mode 0700: it also holds the daemon's keys) if missing. A new file
    gets the current schema; an older one is upgraded in one transaction.

    :raises JournalTooNew: the file was written by a newer sd-actors; it is left untouched.
    :raises JournalError: the file is not an SQLite database, or not an sd-actors journal.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / JOURNAL_FILE_NAME
    # check_same_thread=False: the Journal's lock serialises every use; isolation_level=None
    # lets _transaction issue BEGIN/COMMIT itself instead of sqlite3's implicit transactions.
    connection = sqlite3.connect(path, timeout=_BUSY_TIMEOUT_SECONDS, check_same_thread=False, isolation_level=None)
    try:
        connection.row_factory = sqlite3.Row
        try:
            # Read-only first: a newer journal must be refused before anything changes it.
            _check_version(connection, path)
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.DatabaseError as error:
            raise JournalError(
                f"{path}: not an SQLite database ({error}); move it away or give the daemon another --state-dir"
            ) from error
        if mode != "wal":
            raise JournalError(f"{path}: SQLite refused WAL mode (got {mode!r}); is the state dir on a network "
                               "filesystem? give the daemon a local --state-dir")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = ON")
        _migrate(connection, path)
    except BaseException:
        connection.close()
        raise
    journal = Journal(connection, path=path, clock=clock)
    try:
        yield journal
    finally:
        journal.close()


def _check_version(connection: sqlite3.Connection, path: Path) -> int:
    """The file's schema version, 0 for an empty file."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        return 0
    if "schema_version" not in tables:
        raise JournalError(f"{path}: an SQLite database, but not an sd-actors journal (no schema_version table); "
                           "move it away or give the daemon another --state-dir")
    row = connection.execute("SELECT max(version) FROM schema_version").fetchone()
    found = int(row[0] or 0)
    if found > SCHEMA_VERSION:
        raise JournalTooNew(path, found=found, supported=SCHEMA_VERSION)
    return found


def _migrate(connection: sqlite3.Connection, path: Path) -> None:
    with _atomically(connection):
        # Checked again inside the write lock: another process may have created or upgraded it.
        found = _check_version(connection, path)
        for version in range(found, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                connection.execute(statement)
            connection.execute("UPDATE schema_version SET version = ?", (version + 1,))
