"""Screenshots as the README's were taken: headless Chromium driven by Playwright, of a Prefect UI page or of an
explorer.html (with one head selected).

    pip install playwright   # the driver only; it uses Debian's chromium (apt install chromium)
    python docs/screenshot.py http://127.0.0.1:4200/runs/flow-run/RUN_ID docs/prefect-ui-full-run.png
    python docs/screenshot.py outputs/clusters/explorer.html docs/explorer.png --head 3,7
"""

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--enable-unsafe-swiftshader"]  # WebGL on the CPU for explorer.html's projection


def explorer(page, path: Path, head: tuple[int, int] | None) -> None:
    """Opens explorer.html, waits for its points, selects `head` (default: the middle layer's first head)."""
    page.goto(path.resolve().as_uri())
    page.wait_for_function("() => window.explorer && window.explorer.drawnPoints() > 0")
    layer, number = head or page.evaluate("[Math.floor(explorer.data.layers / 2), 0]")
    page.evaluate("([layer, head]) => explorer.selectHead(layer, head)", [layer, number])


def prefect_ui(page, url: str) -> None:
    page.goto(url, wait_until="networkidle", timeout=60_000)
    page.wait_for_timeout(4000)  # the single-page app draws the run graph after the data arrives


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a Prefect UI URL, or an explorer.html file")
    parser.add_argument("out", help="PNG to write")
    parser.add_argument("--head", help="explorer.html: the head to select, LAYER,HEAD")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        if Path(args.source).is_file():
            explorer(page, Path(args.source), tuple(int(x) for x in args.head.split(",")) if args.head else None)
        else:
            prefect_ui(page, args.source)
        page.screenshot(path=args.out)
        browser.close()
