"""Open a Label Studio task in a real Chromium (Playwright) as the annotator, report what it
shows, and optionally paint or submit a blank annotation; runs in Label Studio's environment.

usage: browser.py URL PROJECT TASK SCREENSHOT.png [ACTION]   (credentials: $LS_EMAIL,
       $LS_PASSWORD)

ACTION, JSON:
  {"paint": {"key": K, "strokes": [[[x, y], ...], ...]}}  press the class hotkey K, drag the
      mouse (button held) through each stroke's points, given in task-image pixels, then
      submit; the screenshot is taken before submitting
  {"blank": true}  open a second annotation with "+", delete all its regions
      (Ctrl+Backspace), submit it empty

Chromium: $CHROMIUM, else Debian's /usr/bin/chromium (Playwright's own browser download is
not reachable everywhere). Prints a JSON line: the label names shown, the number of regions
listed, whether the task's image loaded, and what the action saw (the regions the new
annotation started with; the HTTP status of the submission).
"""

from __future__ import annotations

import json
import os
import shutil
import sys

from playwright.sync_api import Page, sync_playwright

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
# the task's image as the editor shows it: the widest loaded <img> (the data manager's
# thumbnail of the same file is smaller)
IMAGE_JS = ("() => [...document.querySelectorAll('img')].filter(i => i.complete && "
            "i.naturalWidth > 0 && i.getBoundingClientRect().width > 300).sort((a, b) => "
            "b.getBoundingClientRect().width - a.getBoundingClientRect().width)[0]")
REGIONS = ".lsf-outliner-item"  # one per region of the selected annotation


def open_task(page: Page, url: str, project: str, task: str) -> None:
    page.goto(f"{url}/user/login/")
    page.fill("input[name=email]", os.environ["LS_EMAIL"])
    page.fill("input[name=password]", os.environ["LS_PASSWORD"])
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    page.goto(f"{url}/projects/{project}/data?task={task}")
    # Submit (a new annotation) or Update (one submitted before)
    page.wait_for_selector("button:has-text('Submit'), button:has-text('Update')",
                           timeout=120_000)
    page.wait_for_function(f"() => !!({IMAGE_JS})()", timeout=60_000)
    page.wait_for_timeout(1500)  # the brush layers render after the image


def to_screen(page: Page, points: list[list[float]]) -> list[tuple[float, float]]:
    """Task-image pixel centres -> page coordinates of the displayed image."""
    box = page.evaluate(f"() => {{ const i = ({IMAGE_JS})(); const r = "
                        "i.getBoundingClientRect(); return [r.left, r.top, r.width, r.height, "
                        "i.naturalWidth, i.naturalHeight]; }")
    left, top, width, height, nw, nh = box
    return [(left + (x + 0.5) * width / nw, top + (y + 0.5) * height / nh) for x, y in points]


def submit(page: Page) -> int:
    """Click Submit; the HTTP status of the annotation Label Studio stores."""
    with page.expect_response(lambda r: "/annotations" in r.url and r.request.method == "POST",
                              timeout=60_000) as answer:
        page.locator("button:has-text('Submit')").first.click()
    page.wait_for_timeout(1000)
    return answer.value.status


def drag(page: Page, stroke: list[list[float]]) -> None:
    """Hold the button through the stroke's points. Label Studio's tool bar floats over the
    image's right edge and a stroke that reaches it is dropped whole: every point must hit
    the image's canvas, or this exits with the element in the way."""
    points = to_screen(page, stroke)
    for x, y in points:
        hit = page.evaluate("([x, y]) => document.elementFromPoint(x, y)?.tagName", [x, y])
        if hit != "CANVAS":
            raise SystemExit(f"paint: the stroke point ({x:.0f}, {y:.0f}) is under a {hit}, "
                             "not the image")
    page.mouse.move(*points[0], steps=2)
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def paint(page: Page, key: str, strokes: list[list[list[float]]], shot: str) -> dict:
    page.keyboard.press(key)
    page.wait_for_timeout(300)
    for stroke in strokes:
        drag(page, stroke)
    page.wait_for_timeout(800)
    page.screenshot(path=shot)
    return {"status": submit(page)}


def blank(page: Page) -> dict:
    page.on("dialog", lambda dialog: dialog.accept())  # "delete all regions?"
    page.click("[aria-label='Create an annotation']")
    page.wait_for_timeout(1500)
    started = page.eval_on_selector_all(REGIONS, "els => els.length")
    page.keyboard.press("Control+Backspace")
    page.wait_for_timeout(800)
    left = page.eval_on_selector_all(REGIONS, "els => els.length")
    return {"started_with": started, "left": left, "status": submit(page)}


def main() -> None:
    url, project, task, shot = sys.argv[1:5]
    action = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        open_task(page, url, project, task)
        labels = page.eval_on_selector_all(
            ".lsf-label__text, [class*='label__text']", "els => els.map(e => e.textContent)")
        regions = page.eval_on_selector_all(REGIONS, "els => els.length")
        loaded = page.evaluate(f"() => !!({IMAGE_JS})()")
        seen = {"labels": sorted(set(labels)), "regions": regions, "image_loaded": loaded}
        if "paint" in action:
            seen["paint"] = paint(page, action["paint"]["key"], action["paint"]["strokes"], shot)
        elif "blank" in action:
            seen["blank"] = blank(page)
            page.screenshot(path=shot)
        else:
            page.screenshot(path=shot)
        browser.close()
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
