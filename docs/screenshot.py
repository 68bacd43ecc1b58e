"""Screenshot of a Prefect UI page, as the README's were taken: headless Chromium driven by Playwright.

    pip install playwright   # the driver only; it uses Debian's chromium (apt install chromium)
    python docs/screenshot.py http://127.0.0.1:4200/runs/flow-run/RUN_ID docs/prefect-ui-full-run.png
"""

import sys

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]

if __name__ == "__main__":
    url, out = sys.argv[1], sys.argv[2]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(url, wait_until="networkidle", timeout=60_000)
        page.wait_for_timeout(4000)  # the single-page app draws the run graph after the data arrives
        page.screenshot(path=out)
        browser.close()
