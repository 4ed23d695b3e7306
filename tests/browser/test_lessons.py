"""A student does the failover lesson from the page alone: predict, run each step, compare, export."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page

from tests.chromium import ARTIFACTS
from tests.stack import Stack

from .control_page import ControlPage, dash_id

# The failover lesson's two steps are a 15 s and an 8 s experiment, each with its setup and restore.
STEP_SECONDS = 90


def test_a_student_does_the_failover_lesson_from_the_page_and_exports_the_worksheet(
    page: Page, healthy_stack: Stack, tmp_path: Path
) -> None:
    control = ControlPage(page)
    page.select_option("#lesson-name", "failover")
    page.wait_for_selector("text=Goal.")
    page.fill("#lesson-student", "Ada Lovelace")
    page.fill(dash_id(type="lesson-prediction", lesson="failover", id="kill_detection"), "0.5")
    page.fill(dash_id(type="lesson-prediction", lesson="failover", id="kill_failed"), "3")
    page.select_option(dash_id(type="lesson-prediction", lesson="failover", id="pause_detection"), "0.3 to 1.2 s")

    for step in ("kill", "pause"):
        page.click(dash_id(type="lesson-step", lesson="failover", step=step))
        control.wait_for(lambda step=step: _done(page, step), STEP_SECONDS, f"step {step} measured")
    results = page.inner_text("#lesson-results")
    assert "—" not in _cells(page, "measured"), results  # every prediction has its measured value
    assert "Why" in page.inner_text("#lesson-why")
    # The steps were presses like any other: marked on the charts.
    labels = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".flatMap(g => (g.layout && g.layout.annotations || []).map(a => a.text))"
    )
    assert "lesson failover kill" in labels and "lesson failover pause" in labels

    with page.expect_download() as download:
        page.click("#lesson-export")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / saved.name).write_bytes(saved.read_bytes())
    html = saved.read_text()
    assert saved.name == "worksheet-failover-AdaLovelace.html"
    assert '<strong id="student">Ada Lovelace</strong>' in html
    row = re.search(r'<tr data-prediction="kill_detection">(.*?)</tr>', html, re.DOTALL).group(1)
    assert "0.5 s" in row and "not measured" not in row
    assert "0.3 to 1.2 s" in html and "Not run." not in html
    assert html.count("data:image/png;base64,") >= 2


def _done(page: Page, step: str) -> bool:
    titles = {"kill": "Kill gateway-2, then microservice-2, under load", "pause": "Pause gateway-2 under load"}
    return titles[step] in page.inner_text("#lesson-progress")


def _cells(page: Page, column: str) -> list[str]:
    index = {"measured": 2}[column]
    return page.eval_on_selector_all(
        "#lesson-results tbody tr", f"rows => rows.map(r => r.children[{index}].innerText)"
    )
