"""The list of forgotten hosts in a daemon's state folder: written whole before a forget is answered,
read back as it was written, and a damaged one refused with what is wrong and how to fix it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sd_actors.actors._forgotten_hosts import FORGOTTEN_HOSTS_FILE, ForgottenHosts, ForgottenHostsError

C = "tcp://10.0.0.3:3800"
D = "tcp://10.0.0.4:3800"


def test_a_state_folder_without_the_file_has_forgotten_nobody(tmp_path: Path) -> None:
    assert ForgottenHosts(tmp_path).kept == {}


def test_what_is_kept_is_read_back_by_the_next_daemon_of_the_folder_and_nothing_else_is_left_there(
        tmp_path: Path) -> None:
    ForgottenHosts(tmp_path).keep(lambda: {D: -1, C: 1764000000000})

    assert ForgottenHosts(tmp_path).kept == {C: 1764000000000, D: -1}
    assert [path.name for path in tmp_path.iterdir()] == [FORGOTTEN_HOSTS_FILE]


def test_a_host_back_in_the_pool_is_taken_off_the_file(tmp_path: Path) -> None:
    hosts = ForgottenHosts(tmp_path)
    hosts.keep(lambda: {C: 7, D: -1})

    hosts.keep(lambda: {D: -1})

    assert json.loads((tmp_path / FORGOTTEN_HOSTS_FILE).read_text()) == {D: -1}
    assert hosts.kept == ForgottenHosts(tmp_path).kept == {D: -1}


def test_a_list_that_cannot_be_written_raises_and_leaves_no_temporary_file_nor_a_changed_memory(
        tmp_path: Path) -> None:
    hosts = ForgottenHosts(tmp_path)
    (tmp_path / FORGOTTEN_HOSTS_FILE).mkdir()  # in the way of the rename (root may write anywhere else)

    with pytest.raises(IsADirectoryError):
        hosts.keep(lambda: {C: 7})

    assert hosts.kept == {}
    assert [path.name for path in tmp_path.iterdir()] == [FORGOTTEN_HOSTS_FILE]


@pytest.mark.parametrize(("text", "problem"), [
    ("{", "line 1 column 2: Expecting property name enclosed in double quotes"),
    ('["tcp://10.0.0.3:3800"]', "expected a JSON object (address: incarnation), found list"),
    ('{"10.0.0.3": 7}', "invalid daemon address '10.0.0.3': it is not tcp://HOST:PORT, ipc://PATH or inproc://NAME"),
    ('{"tcp://10.0.0.3:3800": "7"}', "the incarnation of tcp://10.0.0.3:3800 is '7', not an integer of -1 or more"),
    ('{"tcp://10.0.0.3:3800": true}', "the incarnation of tcp://10.0.0.3:3800 is True, not an integer of -1 or more"),
], ids=["not JSON", "not an object", "not an address", "not an integer", "a boolean"])
def test_a_damaged_file_is_refused_saying_where_what_and_how_to_fix_it(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / FORGOTTEN_HOSTS_FILE
    path.write_text(text)

    with pytest.raises(ForgottenHostsError) as excinfo:
        ForgottenHosts(tmp_path)

    assert (excinfo.value.path, excinfo.value.problem) == (path, problem)
    assert str(excinfo.value) == (f"{path}: {problem}; fix it, or delete it: the daemons it lists may then count for "
                                  "the majority again until they are forgotten again (sd-actors forget-host)")
