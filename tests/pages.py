"""Pages in Debian's headless chromium, driven by Playwright: the embedded data of an explorer page, decoded, and
the fixtures that open a page (a test module provides `run`, a dict whose "page" is the file to open)."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--enable-unsafe-swiftshader"]  # WebGL on SwiftShader


def page_data(path: Path) -> dict:
    """The JSON embedded in a page."""
    text = re.search(r"<script type='application/json' id='explorer-data'>(.*?)</script>", path.read_text(), re.S)
    return json.loads(text.group(1))


def decoded_points(data: dict) -> pd.DataFrame:
    points = data["points"]
    xy = np.frombuffer(base64.b64decode(points["xy"]), np.float32).reshape(-1, 2)
    columns = {name: np.asarray(c["values"], dtype=object)[np.frombuffer(base64.b64decode(c["codes"]), c["type"])]
               for name, c in points["columns"].items()}
    return pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1], **columns})


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, run):
    """The run's explorer.html opened; yields (page, problems): console errors, page errors, failed requests and
    requests for anything but the file itself."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("requestfailed", lambda r: problems.append(f"failed request: {r.url}"))
    tab.on("request", lambda r: None if r.url.startswith(("file://", "data:", "blob:")) else problems.append(r.url))
    tab.goto(run["page"].as_uri())
    tab.wait_for_function("() => window.explorer && window.explorer.drawnPoints() > 0")
    yield tab, problems
    context.close()
