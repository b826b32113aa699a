"""A TerminationRecord on the wire (RecordInfo) and back.

In a module of its own so that the command line, which prints the records daemons send, needs
neither the runtime nor the daemons' links (actors/_remote.py) to read them.
"""

from __future__ import annotations

from sd_actors.actors._records import TerminationRecord
from sd_actors.net._protocol import RecordInfo


def to_record(info: RecordInfo | None, fallback_path: tuple[str, ...]) -> TerminationRecord:
    """The record ``info`` carries; an abnormal one at ``fallback_path`` when none came."""
    if info is None:
        return TerminationRecord.abnormal("no record", fallback_path)
    return TerminationRecord(info.kind, info.description, info.path, info.cause)


def record_info(record: TerminationRecord | None) -> RecordInfo | None:
    """A TerminationRecord as it travels on the wire."""
    if record is None:
        return None
    return RecordInfo(kind=record.kind, description=record.description, path=record.path, cause=record.cause)


def to_info(record: TerminationRecord) -> RecordInfo:
    info = record_info(record)
    assert info is not None
    return info
