"""What the console's tests share: the real ``sd-actors console`` in a subprocess, and a headless Chromium.

The browser is Debian's ``chromium``, driven by Debian's ``chromedriver`` through selenium (no
browser is downloaded: scripts/setup.sh installs both). Screenshots go to test-artifacts/console/.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from tests.actors.daemon_helpers import START_TIMEOUT, STOP_TIMEOUT, User
from tests.hosts import LineReader

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
PAGE_TIMEOUT = 15.0
"""Seconds the page may take to show a change (a loaded CI machine)."""

_T = TypeVar("_T")


@dataclass
class ConsoleProcess:
    """``sd-actors console`` running: the URL it printed (with the token when it needs one)."""

    process: subprocess.Popen[str]
    url: str
    output: LineReader
    """What it prints after the URL's line."""

    @property
    def base(self) -> str:
        """The URL without its query (no token)."""
        return self.url.split("?", 1)[0]


@contextlib.contextmanager
def running_console(user: User, *arguments: str) -> Iterator[ConsoleProcess]:
    """Start ``sd-actors console ARGUMENTS`` and wait for the line with its URL; SIGTERM at the end (exit 0)."""
    process = user.start("console", *arguments)
    assert process.stdout is not None
    reader = LineReader(process.stdout)
    try:
        line = reader.read_line(timeout=START_TIMEOUT)
    except (TimeoutError, EOFError) as error:
        process.kill()
        _, errors = process.communicate()
        raise AssertionError(f"sd-actors console printed no URL ({error}); stderr:\n{errors}") from None
    match = re.search(r"sd-actors console on (\S+)", line)
    assert match, line
    try:
        yield ConsoleProcess(process, match.group(1), reader)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            status = process.wait(timeout=STOP_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
        assert status == 0, f"sd-actors console exited with {status} after SIGTERM"


@contextlib.contextmanager
def open_browser() -> Iterator[WebDriver]:
    """A headless Chromium (as root it needs --no-sandbox), closed at the end."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:  # never let selenium fetch a browser of its own: say what setup installs
        pytest.fail(f"{', '.join(missing)} missing: run scripts/setup.sh (it installs Debian's chromium and "
                    "chromium-driver)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], _T], what: str) -> _T:
    """Poll ``condition`` until it returns something true (deadline PAGE_TIMEOUT); fail saying ``what``.

    An element the page redrew between finding it and reading it (stale) counts as not yet: the
    page redraws a component's details at each of its events, and ``down`` sends several."""
    result: _T = WebDriverWait(driver, PAGE_TIMEOUT, poll_frequency=0.05,
                               ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(
        condition, f"the page did not show {what} within {PAGE_TIMEOUT} s")
    return result


def click(driver: WebDriver, selector: str) -> None:
    """Click the element at ``selector`` as a user would, again if the tree was redrawn under the click."""
    def clicked(driver: WebDriver) -> bool:
        try:
            driver.find_element(By.CSS_SELECTOR, selector).click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    wait_until(driver, clicked, f"something to click at {selector}")


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save what the browser shows as test-artifacts/console/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    assert driver.save_screenshot(str(path)), f"no screenshot saved to {path}"
    return path
