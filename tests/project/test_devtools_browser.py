"""The debug toolbar's RPC panel and the functions page, in a real headless Chromium.

A real ``runserver`` of ``tests.settings_toolbar`` (admin, sessions, the
toolbar with ``RPCPanel``; its own SQLite database) in front of the module's
real ``runrpc``. The browser opens a page whose view makes three calls, opens
the toolbar's panel and reads its rows; logs in through the admin's login form
and reads the functions page. Each test saves a screenshot in its tmp dir;
with ``ZRPC_SCREENSHOTS=dir`` also there (how docs/_static/ got its own).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, subprocess_env

webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium: pip install selenium")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs a headless browser: apt-get install chromium chromium-driver",
)

#: Seconds a page, the toolbar's panel or the web server gets: the machine is shared.
WAIT = 60
STAFF = ("staff", "staff-password-1")
NOT_STAFF = ("visitor", "visitor-password-1")

USERS = f"""
from django.contrib.auth.models import User
User.objects.create_user({STAFF[0]!r}, password={STAFF[1]!r}, is_staff=True)
User.objects.create_user({NOT_STAFF[0]!r}, password={NOT_STAFF[1]!r})
"""


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def web(server, tmp_path_factory) -> Iterator[str]:
    """The base URL of a runserver with the toolbar, whose views call the module's runrpc."""
    database = tmp_path_factory.mktemp("toolbar") / "db.sqlite3"
    env = subprocess_env(
        DJANGO_SETTINGS_MODULE="tests.settings_toolbar",
        DATABASE_URL=f"sqlite:///{database}",
        ZRPC_ENDPOINT=server.endpoint,
    )
    _manage(env, "migrate", "--no-input")
    _manage(env, "shell", "-c", USERS)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT
        while not _answers(f"{base}/admin/login/"):
            assert proc.poll() is None, f"runserver exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"runserver did not answer within {WAIT} s"
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1000")
    try:
        driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    except WebDriverException as err:
        pytest.skip(f"Chromium did not start: {err.msg}")
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


def screenshot(driver: webdriver.Chrome, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    if os.environ.get("ZRPC_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["ZRPC_SCREENSHOTS"]) / path.name)
    return path


def wait_for(driver: webdriver.Chrome, selector: str) -> object:
    return WebDriverWait(driver, WAIT).until(
        expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, selector))
    )


def log_in(driver: webdriver.Chrome, base: str, user: tuple[str, str], login: str) -> None:
    driver.get(f"{base}{login}?next=/rpc/")
    driver.find_element(By.NAME, "username").send_keys(user[0])
    driver.find_element(By.NAME, "password").send_keys(user[1])
    driver.find_element(By.CSS_SELECTOR, "[type=submit]").click()


def in_toolbar(driver: webdriver.Chrome, selector: str) -> list:
    """Wait until the toolbar (drawn in a shadow DOM) shows ``selector``; return the matches."""

    def shown(driver: webdriver.Chrome) -> list:
        hosts = driver.find_elements(By.ID, "djDebugRoot")
        root = hosts[0].shadow_root if hosts else None
        found = root.find_elements(By.CSS_SELECTOR, selector) if root else []
        return found if found and found[0].is_displayed() else []

    return WebDriverWait(driver, WAIT).until(shown)


def test_the_toolbar_shows_the_three_calls_of_a_page(web, browser, tmp_path):
    browser.get(f"{web}/three-calls/")
    assert browser.find_element(By.ID, "counted").text == "[0, 1, 2]"
    (button,) = in_toolbar(browser, "#djdt-RPCPanel a")
    assert re.search(r"3 calls in \d+\.\d ms", button.text), button.text
    button.click()
    rows = in_toolbar(browser, "#RPCPanel tr.zrpc-call")
    assert [row.get_attribute("data-function") for row in rows] == ["echo", "echo", "count_up"]
    assert [row.get_attribute("data-outcome") for row in rows] == ["ok", "ok", "ok"]
    assert ["zrpc-duplicate" in row.get_attribute("class") for row in rows] == [True, True, False]
    assert ["zrpc-loop" in row.get_attribute("class") for row in rows] == [True, True, False]
    stream = rows[2].find_element(By.CLASS_NAME, "zrpc-stream").text
    assert stream == "stream: 3 items"
    assert rows[0].find_element(By.CLASS_NAME, "zrpc-arguments").text == "'same'"
    assert rows[0].find_element(By.CLASS_NAME, "zrpc-result").text == "'same'"
    request_ids = {row.find_element(By.CLASS_NAME, "zrpc-request-id").text for row in rows}
    assert len(request_ids) == 1
    assert re.fullmatch(r"[0-9a-f]{32}", request_ids.pop())
    screenshot(browser, tmp_path, "rpc_panel")


def test_an_anonymous_visitor_is_sent_to_log_in(web, browser, tmp_path):
    browser.get(f"{web}/rpc/")
    wait_for(browser, "#login-form")
    assert browser.current_url == f"{web}/admin/login/?next=/rpc/"
    screenshot(browser, tmp_path, "functions_page_anonymous")


def test_staff_see_each_function_with_its_docstring_and_try_one(web, browser, tmp_path):
    log_in(browser, web, STAFF, "/admin/login/")
    wait_for(browser, "#function-get_ticket")
    assert browser.current_url == f"{web}/rpc/"
    doc = browser.find_element(By.CSS_SELECTOR, "#function-get_ticket .zrpc-doc").text
    assert doc == "Return one ticket by id."
    count_up = browser.find_element(By.ID, "function-count_up")
    assert "(n, delay=0.0)" in count_up.find_element(By.TAG_NAME, "h2").text
    assert count_up.find_element(By.CLASS_NAME, "zrpc-stream").text == "stream"
    names = [
        element.get_attribute("id").removeprefix("function-")
        for element in browser.find_elements(By.CSS_SELECTOR, ".zrpc-function")
    ]
    assert {"echo", "fail", "get_ticket", "reserve", "ticket_list"} <= set(names)
    # The page whole: the toolbar and the admin's side bar folded.
    in_toolbar(browser, "#djHideToolBarButton")[0].click()
    browser.find_element(By.ID, "toggle-nav-sidebar").click()
    screenshot(browser, tmp_path, "functions_page")
    # DEBUG is on: the form calls the function on ZRPC_CLIENTS["default"] (the runrpc).
    browser.find_element(By.CSS_SELECTOR, "#zrpc-function option[value=echo]").click()
    arguments = browser.find_element(By.ID, "zrpc-arguments")
    arguments.clear()
    arguments.send_keys('["from the browser"]')
    browser.find_element(By.CSS_SELECTOR, "#zrpc-try-form [type=submit]").click()
    assert wait_for(browser, ".zrpc-tried-result").text == '"from the browser"'


def test_a_user_who_is_not_staff_is_refused(web, browser, tmp_path):
    log_in(browser, web, NOT_STAFF, "/accounts/login/")
    wait_for(browser, "body")
    WebDriverWait(browser, WAIT).until(lambda driver: driver.current_url == f"{web}/rpc/")
    assert "403 Forbidden" in browser.page_source
    assert "zrpc-function" not in browser.page_source
    screenshot(browser, tmp_path, "functions_page_not_staff")
