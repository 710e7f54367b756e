"""Open a Label Studio task in a real Chromium (Playwright) as the annotator and report what
it shows; runs in Label Studio's environment.

usage: browser.py URL PROJECT TASK SCREENSHOT.png   (credentials: $LS_EMAIL, $LS_PASSWORD)

Chromium: $CHROMIUM, else Debian's /usr/bin/chromium (Playwright's own browser download is
not reachable everywhere). Prints a JSON line: the label names shown, the number of regions
listed, whether the task's image loaded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from playwright.sync_api import sync_playwright


def main() -> None:
    url, project, task, shot = sys.argv[1:5]
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"{url}/user/login/")
        page.fill("input[name=email]", os.environ["LS_EMAIL"])
        page.fill("input[name=password]", os.environ["LS_PASSWORD"])
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        page.goto(f"{url}/projects/{project}/data?task={task}")
        page.wait_for_selector("text=Submit", timeout=120_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('img')].some(i => i.complete && "
            "i.naturalWidth > 0 && i.src.includes('/data/upload/'))", timeout=60_000)
        page.wait_for_timeout(1500)  # the brush layers render after the image
        labels = page.eval_on_selector_all(
            ".lsf-label__text, [class*='label__text']", "els => els.map(e => e.textContent)")
        regions = page.eval_on_selector_all(
            ".lsf-outliner-item, [class*='outliner-item']", "els => els.length")
        loaded = page.evaluate(
            "() => [...document.querySelectorAll('img')].some(i => i.complete && "
            "i.naturalWidth > 0 && i.src.includes('/data/upload/'))")
        page.screenshot(path=shot)
        browser.close()
    print(json.dumps({"labels": sorted(set(labels)), "regions": regions,
                      "image_loaded": bool(loaded)}))


if __name__ == "__main__":
    main()
