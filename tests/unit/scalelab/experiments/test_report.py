"""Reports: from canned records, a self-contained report.html with the plots embedded, summary.json and the CSV."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

from scalelab.experiments.checks import evaluate
from scalelab.experiments.measure import FailoverEvent
from scalelab.experiments.outcome import VariantOutcome
from scalelab.experiments.records import Record, read_csv, request_metrics
from scalelab.experiments.report import PLOTS, list_results, write_report
from scalelab.experiments.spec import load, parse
from scalelab.experiments.timeline import Executed

T0 = 1_800_000_000.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SCRIPT = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
# Elements that have no end tag.
VOID = {"meta", "img", "br", "hr", "link", "input"}


def caching_records(variant: str = "default") -> list[Record]:
    """Return five new keys requested ten times each: a miss, then hits, alternating gateways."""
    rows = []
    for seq in range(50):
        first = seq % 10 == 0
        rows.append(
            Record(
                variant,
                seq,
                T0 + seq * 0.02,
                60.0 if first else 4.0 + seq % 3,
                200,
                "data_new",
                key=f"new-1-{seq // 10}",
                served_by=f"gateway-{seq % 2 + 1}",
                gateway_id=str(seq % 2 + 1),
                cached=not first,
            )
        )
    return rows


def process_records(variant: str, slow_share: float) -> list[Record]:
    rows = []
    for seq in range(100):
        slow = seq < slow_share * 100
        instance = "microservice-3" if slow else f"microservice-{seq % 2 + 1}"
        rows.append(
            Record(
                variant,
                seq,
                T0 + seq * 0.01,
                210.0 if slow else 12.0,
                200,
                "process",
                served_by=f"gateway-{seq % 2 + 1}",
                instance=instance,
                service_id=instance[-1],
            )
        )
    return rows


def outcome(name: str, records: list[Record], **fields: object) -> VariantOutcome:
    result = VariantOutcome(name, records=records, t0=T0, **fields)  # type: ignore[arg-type]
    result.metrics = request_metrics(records)
    return result


def embedded_images(html: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_a_passing_report_embeds_its_plots_and_writes_summary_and_csv(tmp_path: Path) -> None:
    experiment = load("caching")
    outcomes = [outcome("default", caching_records())]
    checks = evaluate(experiment.checks, {o.name: o.metrics for o in outcomes})
    summary = write_report(tmp_path, experiment, outcomes, checks, "http://127.0.0.1:8000", T0, T0 + 3)

    html = (tmp_path / "report.html").read_text()
    images = embedded_images(html)
    assert len(images) >= 4 and all(image.startswith(PNG_MAGIC) for image in images)
    assert 'src="http' not in html and "<script" not in html  # self-contained, nothing fetched
    assert "PASSED: all 3 checks passed." in html
    assert "Seed 1" in html and "caching.yaml" in html
    assert "repeat: 10" in html  # the configuration, as run
    for kind in ("caching", "histogram", "gateways", "timeline"):
        assert (tmp_path / PLOTS[kind]).read_bytes().startswith(PNG_MAGIC)
    assert not (tmp_path / PLOTS["instances"]).exists()  # no /process, no split by instance

    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["passed"] is True and on_disk["failed_checks"] == []
    assert on_disk["seed"] == 1
    assert on_disk["variants"][0]["metrics"]["cache_speedup"] > 10
    assert on_disk["files"]["plots"]["caching"] == "caching_comparison.png"
    assert read_csv(tmp_path / "requests.csv") == outcomes[0].records


def test_a_failing_report_names_the_failed_check(tmp_path: Path) -> None:
    experiment = load("caching", {"checks.2.min": 100})
    outcomes = [outcome("default", caching_records())]
    checks = evaluate(experiment.checks, {o.name: o.metrics for o in outcomes})
    summary = write_report(tmp_path, experiment, outcomes, checks, "http://127.0.0.1:8000", T0, T0 + 3)
    html = (tmp_path / "report.html").read_text()
    assert "FAILED: <b>cache_speedup &gt;= 100</b>: cache_speedup was" in html
    assert "below the minimum 100" in html
    assert summary["passed"] is False
    assert summary["failed_checks"] == ["cache_speedup >= 100"]


def test_variants_are_compared_side_by_side(tmp_path: Path) -> None:
    experiment = load("algorithms")
    outcomes = [
        outcome("round_robin", process_records("round_robin", 1 / 3)),
        outcome("least_connections", process_records("least_connections", 0.05)),
        outcome("power_of_two", process_records("power_of_two", 0.08)),
    ]
    checks = evaluate(experiment.checks, {o.name: o.metrics for o in outcomes})
    summary = write_report(tmp_path, experiment, outcomes, checks, "http://127.0.0.1:8000", T0, T0 + 20)
    assert summary["passed"], summary["failed_checks"]
    assert (tmp_path / PLOTS["variants"]).read_bytes().startswith(PNG_MAGIC)
    assert (tmp_path / PLOTS["instances"]).exists()
    assert not (tmp_path / PLOTS["timeline"]).exists()  # one timeline per run: only for single-variant ones
    html = (tmp_path / "report.html").read_text()
    assert "<th>round_robin</th><th>least_connections</th><th>power_of_two</th>" in html
    rows = read_csv(tmp_path / "requests.csv")
    assert {row.variant for row in rows} == {"round_robin", "least_connections", "power_of_two"}


def test_failover_events_and_actions_are_tabled_and_drawn(tmp_path: Path) -> None:
    experiment = parse({"load": {"duration": 10}, "timeline": [{"at": 2, "kill": "gateway-2"}]}, "f.yaml")
    kill = Executed("kill gateway-2", "kill", "gateway-2", T0 + 2, T0 + 2.01, ("gateway-2",), 2.0)
    refused = Executed("start gateway-9", "start", "gateway-9", T0 + 3, T0 + 3.0, (), 3.0, "no instance named")
    event = FailoverEvent("gateway-2", "kill", 2.0, detected_after=0.2, predicted=1.1, failed=0, retried=3)
    result = outcome("default", process_records("default", 0), actions=[kill, refused], events=[event])
    result.metrics.update({"detection_seconds": 0.2, "predicted_detection_seconds": 1.1})
    write_report(tmp_path, experiment, [result], [], "http://127.0.0.1:8000", T0, T0 + 12)
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Failover</h2>" in html and "kill gateway-2" in html
    assert "no instance named" in html
    assert (tmp_path / PLOTS["failover"]).read_bytes().startswith(PNG_MAGIC)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["variants"][0]["failover"][0]["detected_after"] == 0.2
    assert summary["variants"][0]["timeline"][0]["offset"] == 2.0


def test_past_runs_are_listed_newest_first(tmp_path: Path) -> None:
    experiment = load("caching")
    for stamp in ("20261128-100000-caching", "20261128-110000-caching"):
        write_report(tmp_path / stamp, experiment, [outcome("default", caching_records())], [], "u", T0, T0 + 1)
    (tmp_path / "20261128-120000-broken").mkdir()
    (tmp_path / "20261128-120000-broken" / "summary.json").write_text("{not json")
    listed = list_results(tmp_path)
    assert [Path(run["directory"]).name for run in listed] == ["20261128-110000-caching", "20261128-100000-caching"]
    assert listed[0]["experiment"] == "caching" and listed[0]["passed"] is True


class TagBalance(HTMLParser):
    """Collect the tags a page opens but does not close, or closes without opening."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.stray: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:
            self.open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.open and self.open[-1] == tag:
            self.open.pop()
        else:
            self.stray.append(tag)


def failover_report(tmp_path: Path, text: str = "gateway-2", error: str = "no instance named") -> str:
    """Write the report of a run with a timeline, a refused action and a failover event; return its HTML."""
    experiment = parse({"load": {"duration": 10}, "timeline": [{"at": 2, "kill": text}]}, "f.yaml")
    kill = Executed(f"kill {text}", "kill", text, T0 + 2, T0 + 2.01, (text,), 2.0)
    refused = Executed("start gateway-9", "start", "gateway-9", T0 + 3, T0 + 3.0, (), 3.0, error)
    event = FailoverEvent(text, "kill", 2.0, detected_after=0.2, predicted=1.1, failed=0, retried=3, note=text)
    result = outcome("default", process_records("default", 0), actions=[kill, refused], events=[event])
    write_report(tmp_path, experiment, [result], [], "http://127.0.0.1:8000", T0, T0 + 12, notes=[text])
    return (tmp_path / "report.html").read_text()


def test_the_report_is_well_formed_html(tmp_path: Path) -> None:
    parser = TagBalance()
    parser.feed(failover_report(tmp_path))
    parser.close()
    assert (parser.open, parser.stray) == ([], [])


def test_text_from_the_experiment_and_the_run_is_escaped(tmp_path: Path) -> None:
    experiment = parse(
        {
            "name": SCRIPT,
            "description": f"description {SCRIPT}",
            "notes": f"notes {SCRIPT}",
            "load": {"duration": 10},
            "variants": [{"name": SCRIPT}],
            "checks": [{"metric": "p99_ms", "max": 0.001, "variant": SCRIPT}],
        },
        "f.yaml",
    )
    outcomes = [outcome(SCRIPT, process_records(SCRIPT, 0))]
    checks = evaluate(experiment.checks, {o.name: o.metrics for o in outcomes})
    assert not checks[0].passed and SCRIPT in checks[0].label and SCRIPT in checks[0].message
    write_report(tmp_path, experiment, outcomes, checks, "http://127.0.0.1:8000", T0, T0 + 12, notes=[SCRIPT])
    html = (tmp_path / "report.html").read_text()

    assert "<script" not in html.lower()
    assert f"<title>ScaleLab experiment {ESCAPED}</title>" in html
    assert f"<h1>Experiment: {ESCAPED}</h1>" in html
    assert f"<p>description {ESCAPED}</p>" in html
    assert f"<p>notes {ESCAPED}</p>" in html  # What to look at
    assert f'<p class="fail">{ESCAPED}</p>' in html  # a note of the run
    assert f"FAILED: <b>p99_ms [{ESCAPED}] &lt;= 0.001</b>: " in html  # a check's label, in the banner
    assert f"<th>{ESCAPED}</th>" in html  # the variant, heading its column
    assert f"name: {ESCAPED}" in html  # the configuration, as run


def test_action_labels_and_errors_are_escaped(tmp_path: Path) -> None:
    html = failover_report(tmp_path, text=SCRIPT, error=f"refused: {SCRIPT}")
    assert "<script" not in html.lower()
    assert f"<td>kill {ESCAPED}</td>" in html  # the action, in the failover and the actions tables
    assert f'<span class="fail">refused: {ESCAPED}</span>' in html
    assert f"<td>{ESCAPED}</td></tr>" in html  # the failover event's note


def test_a_scaling_experiment_reports_the_law_fitted_to_its_throughput(tmp_path: Path) -> None:
    experiment = load("scaling-cpu")
    outcomes = []
    for variant, throughput in zip(experiment.variants, (50.0, 95.0, 120.0, 128.0), strict=True):
        result = outcome(variant.name, process_records(variant.name, 0.0))
        result.metrics["throughput_rps"] = throughput
        outcomes.append(result)
    summary = write_report(tmp_path, experiment, outcomes, [], "http://127.0.0.1:8000", T0, T0 + 20)
    law = summary["scaling_law"]
    assert law["metric"] == "throughput_rps" and law["lambda"] == 50.0
    assert law["kappa"] > 0 and law["knee"] == 3  # 50, 95, 120: the fourth adds less than 25
    assert 4 < law["peak_instances"] < 5
    assert [point["instances"] for point in law["points"]] == [1, 2, 3, 4]
    assert (tmp_path / PLOTS["scaling_law"]).read_bytes().startswith(PNG_MAGIC)
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Scaling law</h2>" in html and "contention" in html
    assert json.loads((tmp_path / "summary.json").read_text())["scaling_law"]["knee"] == 3


def test_a_scaling_experiment_without_enough_points_says_why_it_has_no_fit(tmp_path: Path) -> None:
    experiment = load("scaling-cpu")
    outcomes = [outcome(variant.name, process_records(variant.name, 0.0)) for variant in experiment.variants[:2]]
    summary = write_report(tmp_path, experiment, outcomes, [], "http://127.0.0.1:8000", T0, T0 + 20)
    assert summary["scaling_law"] is None
    assert any("no scaling-law fit" in note for note in summary["notes"])


def test_each_tiers_cpu_time_per_request_is_in_the_measured_table(tmp_path: Path) -> None:
    experiment = load("microservice-routing")
    result = outcome("default", process_records("default", 0.0))
    result.metrics.update({"cpu_ms_per_request.gateway": 1.25, "cpu_ms_per_request.microservice": 0.5})
    write_report(tmp_path, experiment, [result], [], "http://127.0.0.1:8000", T0, T0 + 5)
    html = (tmp_path / "report.html").read_text()
    assert "cpu_ms_per_request.gateway <span" in html and "CPU ms per answered request" in html
    assert '<td class="num">1.25</td>' in html
