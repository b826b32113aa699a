"""CURVE keypairs and authorized keys on disk: made private, read back the same, bad lines reported."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq

from sd_actors.net import (
    AuthorizedKey,
    AuthorizedKeysError,
    InvalidKey,
    KeyFileError,
    authorize,
    authorized_keys,
    generate_keypair,
    load_keypair,
    load_or_create_keypair,
    parse_key,
    user_config_folder,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- keypairs -----------------------------------------------------------------------------------------


def test_a_new_keypair_is_written_with_the_secret_private_and_the_folder_closed(tmp_path: Path) -> None:
    folder = tmp_path / "state" / "keys"

    pair = load_or_create_keypair(folder)

    assert mode_of(folder) == 0o700
    assert mode_of(folder / "curve.key") == 0o600
    assert mode_of(folder / "curve.pub") == 0o644
    assert (folder / "curve.pub").read_text() == pair.public.decode() + "\n"
    assert pair.secret.decode() in (folder / "curve.key").read_text()
    assert not list(folder.glob(".*")), "no temporary file is left behind"


def test_a_keypair_is_reloaded_identically(tmp_path: Path) -> None:
    created = load_or_create_keypair(tmp_path)

    assert load_or_create_keypair(tmp_path) == created
    assert load_keypair(tmp_path) == created


def test_the_public_key_is_the_public_half_of_the_secret_key(tmp_path: Path) -> None:
    pair = load_or_create_keypair(tmp_path)

    assert zmq.curve_public(pair.secret) == pair.public
    assert len(pair.public) == len(pair.secret) == 40


def test_the_secret_key_never_shows_in_a_repr() -> None:
    pair = generate_keypair()

    assert pair.secret.decode() not in repr(pair)
    assert pair.public.decode() in repr(pair)


def test_loading_a_missing_keypair_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError) as excinfo:
        load_keypair(tmp_path)

    assert excinfo.value.path == tmp_path / "curve.key"
    assert "sd-actors keys init" in excinfo.value.hint


def test_a_secret_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_keypair(tmp_path)
    (tmp_path / "curve.key").chmod(0o644)

    with pytest.raises(KeyFileError) as excinfo:
        load_keypair(tmp_path)

    assert "readable by group or others (mode 0644)" in str(excinfo.value)
    assert excinfo.value.hint.startswith(f"chmod 600 {tmp_path / 'curve.key'}")


def test_a_missing_public_key_file_is_written_again_from_the_secret(tmp_path: Path) -> None:
    pair = load_or_create_keypair(tmp_path)
    (tmp_path / "curve.pub").unlink()

    assert load_keypair(tmp_path) == pair
    assert (tmp_path / "curve.pub").read_text() == pair.public.decode() + "\n"


def test_a_public_key_file_that_does_not_match_the_secret_is_refused(tmp_path: Path) -> None:
    load_or_create_keypair(tmp_path)
    (tmp_path / "curve.pub").write_text(generate_keypair().public.decode() + "\n")

    with pytest.raises(KeyFileError) as excinfo:
        load_keypair(tmp_path)

    assert excinfo.value.path == tmp_path / "curve.pub"
    assert "delete" in excinfo.value.hint


def test_a_damaged_secret_key_file_is_refused(tmp_path: Path) -> None:
    load_or_create_keypair(tmp_path)
    (tmp_path / "curve.key").write_text("# nothing here\n")

    with pytest.raises(KeyFileError, match="expected one key line, found 0"):
        load_keypair(tmp_path)


# -- one key ------------------------------------------------------------------------------------------

BAD_KEYS = [
    ("too short", "abc", "it has 3 characters instead of 40"),
    ("too long", "a" * 41, "it has 41 characters instead of 40"),
    ("not z85", "~" * 40, "'~' are not Z85 characters"),
    ("over 32 bits in a group", "#" * 40, "characters 1-5 do not encode 4 bytes"),
    ("not ascii", "é" * 40, "not ASCII"),
]


@pytest.mark.parametrize(("key", "problem"), [case[1:] for case in BAD_KEYS], ids=[case[0] for case in BAD_KEYS])
def test_a_key_must_be_40_z85_characters(key: str, problem: str) -> None:
    with pytest.raises(InvalidKey) as excinfo:
        parse_key(key)

    assert problem in excinfo.value.problem
    assert "40 Z85 characters" in excinfo.value.hint


def test_a_key_is_accepted_as_text_or_bytes_with_surrounding_blanks() -> None:
    public = generate_keypair().public

    assert parse_key(f"  {public.decode()}\n") == public
    assert parse_key(public) == public


# -- authorized keys -----------------------------------------------------------------------------------


def test_without_an_authorized_keys_file_nobody_is_authorized(tmp_path: Path) -> None:
    assert authorized_keys(tmp_path) == ()


def test_authorized_keys_skips_comments_and_blank_lines_and_keeps_labels(tmp_path: Path) -> None:
    alice, bob, carol = (generate_keypair().public for _ in range(3))
    (tmp_path / "authorized_keys").write_text(
        "# the daemons of the pool\n"
        "\n"
        f"{alice.decode()} alice@laptop\n"
        f"   {bob.decode()}    host b, rack 4  \n"
        "   # an indented comment\n"
        f"{carol.decode()}\n"
    )

    assert authorized_keys(tmp_path) == (
        AuthorizedKey(public=alice, label="alice@laptop"),
        AuthorizedKey(public=bob, label="host b, rack 4"),
        AuthorizedKey(public=carol, label=""),
    )


def test_every_bad_line_of_authorized_keys_is_reported_with_its_number(tmp_path: Path) -> None:
    good = generate_keypair().public.decode()
    (tmp_path / "authorized_keys").write_text(f"# keys\n{good} fine\nnot-a-key label\n{good}\n{good[:-1]}\n")

    with pytest.raises(AuthorizedKeysError) as excinfo:
        authorized_keys(tmp_path)

    assert excinfo.value.line == 3
    assert [number for number, _, _ in excinfo.value.bad_lines] == [3, 5]
    assert f"{tmp_path / 'authorized_keys'}:3: not a CURVE public key: it has 9 characters" in str(excinfo.value)
    assert f"{tmp_path / 'authorized_keys'}:5: not a CURVE public key: it has 39 characters" in str(excinfo.value)


def test_an_authorized_keys_file_others_can_write_is_refused(tmp_path: Path) -> None:
    authorize(tmp_path, generate_keypair().public)
    (tmp_path / "authorized_keys").chmod(0o666)

    with pytest.raises(KeyFileError) as excinfo:
        authorized_keys(tmp_path)

    assert "anyone could authorize a key" in str(excinfo.value)
    assert excinfo.value.hint == f"chmod go-w {tmp_path / 'authorized_keys'}"


def test_authorize_adds_a_key_with_its_label_and_reads_back(tmp_path: Path) -> None:
    first, second = generate_keypair().public, generate_keypair().public

    added = authorize(tmp_path / "keys", first.decode(), "host-b")
    authorize(tmp_path / "keys", second, "alice\n  on\tthe laptop")

    assert added == AuthorizedKey(public=first, label="host-b")
    assert authorized_keys(tmp_path / "keys") == (
        AuthorizedKey(public=first, label="host-b"),
        AuthorizedKey(public=second, label="alice on the laptop"),
    )
    assert mode_of(tmp_path / "keys" / "authorized_keys") == 0o644


def test_authorizing_a_listed_key_again_adds_nothing(tmp_path: Path) -> None:
    key = generate_keypair().public
    authorize(tmp_path, key, "first")
    before = (tmp_path / "authorized_keys").read_text()

    again = authorize(tmp_path, key, "second")

    assert again == AuthorizedKey(public=key, label="first")
    assert (tmp_path / "authorized_keys").read_text() == before


def test_authorize_starts_a_new_line_after_a_file_edited_without_a_final_newline(tmp_path: Path) -> None:
    first, second = generate_keypair().public, generate_keypair().public
    (tmp_path / "authorized_keys").write_text(f"{first.decode()} edited by hand")

    authorize(tmp_path, second)

    assert [entry.public for entry in authorized_keys(tmp_path)] == [first, second]


def test_authorizing_an_invalid_key_changes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidKey):
        authorize(tmp_path, "not a key")

    assert not (tmp_path / "authorized_keys").exists()


# -- where keys live -----------------------------------------------------------------------------------


def test_a_users_keys_live_under_xdg_config_home() -> None:
    assert user_config_folder({"XDG_CONFIG_HOME": "/cfg", "HOME": "/home/u"}) == Path("/cfg/sd-actors")


@pytest.mark.parametrize("xdg", [None, "", "relative/path"], ids=["unset", "empty", "relative (invalid, ignored)"])
def test_without_a_valid_xdg_config_home_a_users_keys_live_under_dot_config(xdg: str | None) -> None:
    environ = {"HOME": "/home/u"} if xdg is None else {"HOME": "/home/u", "XDG_CONFIG_HOME": xdg}

    assert user_config_folder(environ) == Path("/home/u/.config/sd-actors")
