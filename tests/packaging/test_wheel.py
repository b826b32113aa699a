"""The built wheel installs sd-actors as sd_actors.<package> and nothing else.

Each top-level folder of the checkout (descriptions/, actors/, net/, plugins/, policies/) is
mapped into the sd_actors namespace by pyproject.toml's package-dir. These tests build the
wheel from a copy of the working tree, install it into a fresh virtual environment and look at
it from a folder that has nothing to do with the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[2]

# Left out of the copy the wheel is built from: none of it belongs in a wheel, and a stale
# build/ would leak deleted modules into it.
NOT_SOURCES = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".hypothesis",
)

SMARTFROG_LIBRARY = "sd_actors/descriptions/library/org/smartfrog/components.sf"


def _package_dir() -> dict[str, str]:
    """pyproject.toml's mapping of installed package name to checkout folder."""
    with (REPOSITORY / "pyproject.toml").open("rb") as file:
        package_dir: dict[str, str] = tomllib.load(file)["tool"]["setuptools"]["package-dir"]
    return package_dir


PACKAGE_DIR = _package_dir()
FOLDERS = sorted(PACKAGE_DIR.values())


def _run(*argv: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command with no PYTHONPATH or user site-packages leaking into it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONNOUSERSITE"] = "1"
    return subprocess.run(
        [str(arg) for arg in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def _check(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the working tree (uncommitted files included)."""
    source = tmp_path_factory.mktemp("source") / "sd-actors"
    shutil.copytree(REPOSITORY, source, ignore=shutil.ignore_patterns(*NOT_SOURCES), symlinks=True)
    out = tmp_path_factory.mktemp("dist")

    _check(_run(sys.executable, "-m", "build", "--wheel", "--outdir", out, source))

    (built,) = out.glob("*.whl")
    return built


@pytest.fixture(scope="module")
def wheel_names(wheel: Path) -> frozenset[PurePosixPath]:
    with zipfile.ZipFile(wheel) as archive:
        return frozenset(PurePosixPath(name) for name in archive.namelist())


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment (no system site-packages) with only the wheel installed.

    The wheel goes in with --no-deps so libvirt-python is not compiled a second time; the
    runtime dependencies are then borrowed from the test's own environment by a .pth line
    placed *after* the venv's site-packages. A path added by a .pth line is not a site
    directory, so the editable install's import hook there never runs: every sd_actors module
    the venv imports comes from the wheel.
    """
    venv = tmp_path_factory.mktemp("venv") / "env"
    _check(_run(sys.executable, "-m", "venv", "--without-pip", venv))
    python = venv / "bin" / "python"
    _check(_run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
                "--disable-pip-version-check", "--quiet", wheel))
    site_packages = Path(_check(_run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"))
                         .stdout.strip())
    borrowed = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    (site_packages / "zz_borrowed_dependencies.pth").write_text("".join(f"{path}\n" for path in borrowed))

    yield venv

    shutil.rmtree(venv, ignore_errors=True)


@pytest.fixture
def elsewhere(tmp_path: Path) -> Path:
    """An empty folder far from the checkout, to run the installed package from."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    return folder


def test_wheel_holds_nothing_at_top_level_but_sd_actors_and_its_metadata(
    wheel_names: frozenset[PurePosixPath],
) -> None:
    top_level = {name.parts[0] for name in wheel_names}

    strays = {name for name in top_level if name != "sd_actors" and not name.endswith(".dist-info")}

    assert "sd_actors" in top_level
    assert not strays, f"the wheel installs {sorted(strays)} at the top of site-packages"


def test_wheel_ships_every_python_module_of_the_package_folders(
    wheel_names: frozenset[PurePosixPath],
) -> None:
    # A sub-package missing from pyproject.toml's `packages` still imports in the editable
    # install, so only the wheel shows that it was left out.
    expected = {
        PurePosixPath(package.replace(".", "/"), module.relative_to(REPOSITORY / folder).as_posix())
        for package, folder in PACKAGE_DIR.items()
        for module in (REPOSITORY / folder).rglob("*.py")
        if "__pycache__" not in module.parts
    }

    missing = expected - wheel_names

    assert not missing, f"add their packages to [tool.setuptools] packages: {sorted(map(str, missing))}"


def test_wheel_ships_every_sf_file_of_the_library_and_examples(wheel_names: frozenset[PurePosixPath]) -> None:
    expected = {
        PurePosixPath("sd_actors/descriptions", sf.relative_to(REPOSITORY / "descriptions").as_posix())
        for sf in (REPOSITORY / "descriptions").rglob("*.sf")
    }

    missing = expected - wheel_names

    assert not missing, f"extend [tool.setuptools.package-data]: {sorted(map(str, missing))}"


def test_wheel_ships_the_smartfrog_component_library(wheel_names: frozenset[PurePosixPath]) -> None:
    assert PurePosixPath(SMARTFROG_LIBRARY) in wheel_names


def test_wheel_declares_the_sd_actors_console_script(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (entry_points,) = [name for name in archive.namelist() if name.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()

    assert "[console_scripts]\nsd-actors = sd_actors.actors._cli:main\n" in text


def test_installed_wheel_imports_every_package_under_sd_actors_from_an_unrelated_folder(
    venv: Path, elsewhere: Path
) -> None:
    packages = sorted(PACKAGE_DIR)
    script = "import importlib\n" + "".join(
        f"print(list(importlib.import_module({package!r}).__path__)[0])\n" for package in packages
    )

    result = _check(_run(venv / "bin" / "python", "-c", script, cwd=elsewhere))

    locations = [Path(line) for line in result.stdout.splitlines()]
    assert len(locations) == len(packages)
    for package, location in zip(packages, locations, strict=True):
        assert location.is_relative_to(venv), f"{package} was imported from {location}, not the venv"


@pytest.mark.parametrize("name", FOLDERS, ids=FOLDERS)
def test_installed_wheel_has_no_top_level_module_named_after_a_folder(
    venv: Path, elsewhere: Path, name: str
) -> None:
    script = f"""
try:
    import {name}
except ModuleNotFoundError:
    print("not found")
else:
    print("found at", getattr({name}, "__file__", None) or list({name}.__path__))
"""

    result = _check(_run(venv / "bin" / "python", "-c", script, cwd=elsewhere))

    assert result.stdout.strip() == "not found"


def test_installed_wheel_installs_the_sd_actors_command(venv: Path) -> None:
    assert (venv / "bin" / "sd-actors").is_file()


def test_installed_sd_actors_command_reports_the_distribution_version(venv: Path, elsewhere: Path) -> None:
    query = "import importlib.metadata; print(importlib.metadata.version('sd-actors'))"
    version = _check(_run(venv / "bin" / "python", "-c", query)).stdout.strip()

    result = _check(_run(venv / "bin" / "sd-actors", "--version", cwd=elsewhere))

    assert version in result.stdout
