"""Chapter 03's layer explorer (`lab.viz.explorer`) in a real browser: JupyterLab, headless Chromium, Selenium.

The test starts JupyterLab on 127.0.0.1 (a free port, no token) in a temporary folder holding a copy of the executed
smoke chapter 03, opens it, runs a cell that loads the chapter's `fisher_groups.parquet` and then the explorer cell,
changes the estimator (a Dropdown) and the colour scale (ToggleButtons) through the page, and checks that the heatmap
image changed after each change. It kills every process it started (Chromium and chromedriver through Selenium, the
server and its kernel as one process group).

Skipped, with the reason, without `chromium` and `chromedriver` on PATH (Debian: `apt-get install -y chromium
chromium-driver`) or without the `selenium` package. Uses `smoke_book` (tests/conftest.py), so it is marked
`notebook`: `runs/smoke/` and its artefacts when they exist, else the fixture runs chapters 01-03.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from lab.notebooks import run_dir

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")
pytestmark = [
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no chromium and chromedriver on PATH "
                       "(Debian: apt-get install -y chromium chromium-driver)"),
    pytest.mark.skipif(importlib.util.find_spec("selenium") is None, reason="selenium is not installed (dev extra)"),
]
EXPLORER_CELL = "viz.layer_explorer("
WAIT = 120  # seconds for each step on a busy 2-core machine


def _artefacts_root(nb) -> str:
    """The ARTEFACTS parameter papermill injected into an executed chapter ("" when none)."""
    for c in nb.cells:
        if "injected-parameters" in c.metadata.get("tags", []):
            m = re.search(r'^ARTEFACTS = "(.*)"$', c.source, re.M)
            return m.group(1) if m else ""
    return ""


@pytest.fixture(scope="module")
def chapter_03(smoke_book) -> tuple[Path, str]:
    """An executed chapter 03 and the artefact root holding its `fisher_groups.parquet`: this session's smoke book
    when it ran 03, else runs/smoke when its artefacts are still there, else the smoke book run to 03 now."""
    import lab

    if smoke_book.done.get("03_fisher") is not True:
        nb_path = run_dir("smoke") / "03_fisher.ipynb"
        if nb_path.is_file():
            root = _artefacts_root(nbformat.read(nb_path, as_version=4))
            if lab.paths("smoke", root or None).file("fisher_groups.parquet").is_file():
                return nb_path, root
        smoke_book.run("03")
    return smoke_book.runs / "03_fisher.ipynb", str(smoke_book.artefacts)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(nb_path: Path, artefacts: str, folder: Path) -> Path:
    """A copy of the chapter with a cell before the explorer that loads what the explorer needs, the explorer's saved
    output and widget state removed (so the only explorer on the page is the one the test runs)."""
    nb = nbformat.read(nb_path, as_version=4)
    i = next(k for k, c in enumerate(nb.cells) if c.cell_type == "code" and EXPLORER_CELL in c.source)
    nb.cells[i].outputs, nb.cells[i].execution_count = [], None
    load = nbformat.v4.new_code_cell(
        "import lab\nfrom lab import fisher as lf\nfrom lab import viz\nfrom IPython.display import display\n"
        f"groups = lf.load_groups(lab.paths('smoke', {artefacts!r} or None))\nprint('groups', len(groups))")
    load.metadata["tags"] = ["browser-test-load"]
    nb.cells.insert(i, load)
    nb.metadata.pop("widgets", None)
    out = folder / "03_fisher.ipynb"
    nbformat.write(nb, out)
    return out


def _settings(folder: Path) -> Path:
    """JupyterLab user settings for the test: every cell in the DOM (no windowing), no news or update checks."""
    d = folder / "settings"
    for name, value in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                                        "checkForUpdates": False}}.items():
        f = d / f"{name}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    return d


@pytest.fixture
def lab_server(tmp_path):
    """JupyterLab on 127.0.0.1:<free port>, no token, rooted at tmp_path; killed with its kernels afterwards."""
    port = _free_port()
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(_settings(tmp_path)), JUPYTER_RUNTIME_DIR=str(tmp_path / "rt"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"))
    log = open(tmp_path / "jupyter.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", "--IdentityProvider.token=", "--ServerApp.password=",
         "--ServerApp.disable_check_xsrf=True", f"--ServerApp.root_dir={tmp_path}"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not start: {(tmp_path / 'jupyter.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url, tmp_path
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started (one session)
            proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()  # ends Chromium and chromedriver


def _heatmap(cell):
    """The src of the explorer's heatmap image in the cell's output ('' while there is none)."""
    from selenium.common.exceptions import StaleElementReferenceException

    if cell is None:
        return ""
    try:
        imgs = cell.find_elements("css selector", ".widget-output img")
        return imgs[0].get_attribute("src") if imgs else ""
    except StaleElementReferenceException:
        return ""


def _cell_with(browser, text):
    """The code cell whose source holds `text` (None while the page has none)."""
    from selenium.common.exceptions import StaleElementReferenceException

    try:
        cells = browser.find_elements("css selector", ".jp-Notebook .jp-CodeCell")
        return next((c for c in cells if text in c.find_element("css selector", ".jp-InputArea").text), None)
    except StaleElementReferenceException:
        return None


def _run_cell(browser, wait, text):
    """Select the cell holding `text` (click its prompt: command mode) and run it (Shift+Enter)."""
    from selenium.webdriver.common.keys import Keys

    wait.until(lambda d: _cell_with(d, text)).find_element("css selector", ".jp-InputPrompt").click()
    browser.switch_to.active_element.send_keys(Keys.SHIFT, Keys.ENTER)


def _drive(browser, wait) -> list[str]:
    """Run the load and explorer cells, change the estimator and the colour scale; the heatmap after each step."""
    from selenium.webdriver.support.ui import Select

    def changed(previous):
        return lambda d: (h := _heatmap(_cell_with(d, EXPLORER_CELL))) not in ("", previous) and h

    _run_cell(browser, wait, "lf.load_groups(")
    wait.until(lambda d: "groups" in _cell_with(d, "lf.load_groups(").find_element("css selector",
                                                                                   ".jp-OutputArea").text)
    _run_cell(browser, wait, EXPLORER_CELL)
    shown = [wait.until(changed(""))]
    estimator = Select(_cell_with(browser, EXPLORER_CELL).find_element("css selector", ".widget-dropdown select"))
    assert estimator.first_selected_option.text == "fisher_empirical"
    estimator.select_by_visible_text("fisher_true")
    shown.append(wait.until(changed(shown[-1])))
    buttons = _cell_with(browser, EXPLORER_CELL).find_elements("css selector", ".widget-toggle-button")
    next(b for b in buttons if b.text.strip() == "log").click()
    shown.append(wait.until(changed(shown[-1])))
    return shown


def test_explorer_redraws_in_the_browser(chapter_03, lab_server, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    url, folder = lab_server
    _prepare(*chapter_03, folder)
    wait = WebDriverWait(browser, WAIT, poll_frequency=0.5, ignored_exceptions=[StaleElementReferenceException])
    browser.get(f"{url}/lab/tree/03_fisher.ipynb")
    try:
        shown = _drive(browser, wait)
    except Exception:
        browser.save_screenshot(str(folder / "failure.png"))  # kept in the test's tmp folder
        raise
    assert all(h.startswith("data:image/png") for h in shown)
    assert len(set(shown)) == 3  # the estimator and the colour scale each redrew the heatmap
