"""Write an experiment's results: PNG plots, a self-contained report.html, summary.json and requests.csv.

Plots are drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state),
so a report can be written from any thread, the control page's included. report.html is
rendered from the Jinja2 templates in ``templates/`` with autoescaping on, so text from an
experiment file or the stack is shown as text, never read as markup.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from scalelab.catalog import service_of
from scalelab.experiments.checks import METRICS, CheckResult
from scalelab.experiments.measure import CPU_PREFIX
from scalelab.experiments.outcome import VariantOutcome
from scalelab.experiments.records import Record, write_csv
from scalelab.experiments.spec import Experiment
from scalelab.experiments.usl import UslFit
from scalelab.experiments.usl import fit as fit_usl

__all__ = ["PLOTS", "list_results", "write_report"]

# File names of the plots; the first four are the classic lab's.
PLOTS = {
    "gateways": "load_balancing_distribution.png",
    "histogram": "response_time_histogram.png",
    "caching": "caching_comparison.png",
    "instances": "microservice_distribution.png",
    "timeline": "timeline.png",
    "variants": "variants.png",
    "failover": "failover.png",
    "scaling_law": "scaling_law.png",
}
DPI = 100
MAX_CACHE_KEYS = 20
BIN_SECONDS = 0.5
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


# ---------------------------------------------------------------------------- plots


# More bars than this side by side and their labels would overlap.
MANY_BARS = 6


def _figure(width: float = 7.0, height: float = 4.0) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        try:
            figure.savefig(path, format="png")
        except UserWarning:
            # Too many labels for constrained layout (a long fault matrix): lay the figure out plainly.
            figure.set_layout_engine("none")
            figure.savefig(path, format="png")
    return path


def _answered(records: Sequence[Record]) -> list[float]:
    return [r.latency_ms for r in records if r.latency_ms is not None]


def plot_histogram(outcomes: Sequence[VariantOutcome], path: Path) -> Path | None:
    """Draw the response-time histogram, one outline per variant."""
    series = [(o.name, _answered(o.records)) for o in outcomes if _answered(o.records)]
    if not series:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    top = max(max(values) for _, values in series)
    bins = [top * i / 40 for i in range(41)] if top > 0 else 10
    for index, (name, values) in enumerate(series):
        axes.hist(
            values,
            bins=bins,
            histtype="stepfilled" if len(series) == 1 else "step",
            linewidth=1.5,
            color=COLORS[index % len(COLORS)],
            alpha=0.8,
            label=name,
        )
    axes.set_xlabel("response time (ms)")
    axes.set_ylabel("requests")
    axes.set_title("Response-time histogram")
    if len(series) > 1:
        axes.legend()
    return _save(figure, path)


def plot_split(outcomes: Sequence[VariantOutcome], attribute: str, title: str, path: Path) -> Path | None:
    """Draw how many answered requests each gateway (served_by) or instance took, grouped by variant."""
    counts = [
        (o.name, Counter(getattr(r, attribute) for r in o.records if r.ok and getattr(r, attribute))) for o in outcomes
    ]
    names = sorted({name for _, count in counts for name in count})
    if not names:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    width = 0.8 / len(counts)
    for index, (variant, count) in enumerate(counts):
        xs = [i + (index - (len(counts) - 1) / 2) * width for i in range(len(names))]
        bars = axes.bar(xs, [count[name] for name in names], width, label=variant, color=COLORS[index % len(COLORS)])
        axes.bar_label(bars, fontsize=8)
    axes.set_xticks(range(len(names)), names)
    axes.set_ylabel("requests answered")
    axes.set_title(title)
    if len(counts) > 1:
        axes.legend(fontsize=8)
    return _save(figure, path)


def cache_keys(records: Sequence[Record]) -> list[tuple[str, float, float | None]]:
    """Return (key, first miss latency, mean hit latency) for the keys that missed, in order of first request."""
    misses: dict[str, float] = {}
    hits: dict[str, list[float]] = defaultdict(list)
    for r in sorted(records, key=lambda record: record.seq):
        if not r.ok or r.cached is None or r.latency_ms is None:
            continue
        if r.cached:
            hits[r.key].append(r.latency_ms)
        elif r.key not in misses:
            misses[r.key] = r.latency_ms
    return [(key, miss, sum(hits[key]) / len(hits[key]) if hits[key] else None) for key, miss in misses.items()]


def plot_caching(outcome: VariantOutcome, path: Path) -> Path | None:
    """Draw each key's first (miss) latency beside its mean hit latency, with the overall speed-up."""
    keys = [row for row in cache_keys(outcome.records) if row[2] is not None][:MAX_CACHE_KEYS]
    if not keys:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    xs = range(len(keys))
    axes.bar(
        [x - 0.2 for x in xs], [miss for _, miss, _ in keys], 0.4, label="first request (cache miss)", color=COLORS[3]
    )
    axes.bar(
        [x + 0.2 for x in xs],
        [hit or 0 for _, _, hit in keys],
        0.4,
        label="later requests (cache hits, mean)",
        color=COLORS[2],
    )
    axes.set_xticks(list(xs), [f"key {i + 1}" for i in xs], rotation=45 if len(keys) > 8 else 0)
    axes.set_ylabel("response time (ms)")
    speedup = outcome.metrics.get("cache_speedup")
    axes.set_title("Cache miss vs hit" + (f": hits are {speedup:.1f}x faster" if speedup else ""))
    axes.legend(fontsize=8)
    return _save(figure, path)


def _mark_actions(axes: Any, outcome: VariantOutcome) -> None:
    for executed in outcome.actions:
        if executed.offset is None:
            continue
        style = "-" if executed.verb in ("kill", "pause", "remove") else ":"
        axes.axvline(executed.offset, color="#555555", linestyle=style, linewidth=1)
        axes.annotate(
            executed.label,
            (executed.offset, 1),
            xycoords=("data", "axes fraction"),
            rotation=90,
            fontsize=7,
            va="top",
            ha="right",
            color="#333333",
        )


def _rates(axes: Any, outcome: VariantOutcome, t0: float, attribute: str, title: str) -> None:
    counts: dict[str, Counter[int]] = defaultdict(Counter)
    for r in outcome.records:
        if r.ok and not getattr(r, attribute):
            continue  # answered without naming one (e.g. /data in the instance panel)
        counts[getattr(r, attribute) if r.ok else "failed"][int((r.sent_at - t0) // BIN_SECONDS)] += 1
    end = max(int((r.sent_at - t0) // BIN_SECONDS) for r in outcome.records) + 1
    for index, name in enumerate(sorted(counts, key=lambda n: (n == "failed", n))):
        color = "#d62728" if name == "failed" else COLORS[index % len(COLORS)]
        rates = [counts[name][b] / BIN_SECONDS for b in range(end)]
        axes.plot([b * BIN_SECONDS for b in range(end)], rates, label=name, color=color)
    axes.set_ylabel("requests/s")
    axes.set_title(title, fontsize=10)
    if counts:
        axes.legend(fontsize=7, loc="lower left")


def plot_timeline(outcome: VariantOutcome, path: Path) -> Path | None:
    """Draw requests per second by gateway (and instance) and every request's latency over time, with the actions."""
    if not outcome.records:
        return None
    t0 = outcome.t0 if outcome.t0 is not None else min(r.sent_at for r in outcome.records)
    with_instances = any(r.instance for r in outcome.records)
    figure = _figure(8, 7.5 if with_instances else 5.5)
    panels = list(figure.subplots(3 if with_instances else 2, 1, sharex=True))
    _rates(panels[0], outcome, t0, "served_by", "Requests per second by serving gateway (by time sent)")
    if with_instances:
        _rates(panels[1], outcome, t0, "instance", "/process per second by microservice instance")
    latency_axes = panels[-1]
    ok = [(r.sent_at - t0, r.latency_ms) for r in outcome.records if r.ok and r.latency_ms is not None]
    bad = [(r.sent_at - t0, r.latency_ms or 0.0) for r in outcome.records if not r.ok]
    if ok:
        latency_axes.scatter(*zip(*ok, strict=True), s=4, color=COLORS[0], label="answered 2xx")
    if bad:
        latency_axes.scatter(*zip(*bad, strict=True), s=20, marker="x", color="#d62728", label="failed or lost")
    latency_axes.set_ylabel("response time (ms)")
    latency_axes.set_xlabel("seconds since the load started")
    latency_axes.legend(fontsize=7, loc="upper left")
    for axes in panels:
        _mark_actions(axes, outcome)
    return _save(figure, path)


def plot_variants(outcomes: Sequence[VariantOutcome], path: Path) -> Path | None:
    """Draw the variants side by side: throughput, latency percentiles, the split, and database reads."""
    if len(outcomes) < 2:
        return None
    names = [o.name for o in outcomes]
    many = len(names) > MANY_BARS  # long rows of bars: a wider figure, labels turned upright
    figure = _figure(max(10.0, 0.8 * len(names)), 10 if many else 7)
    (throughput, latency), (split, extra) = figure.subplots(2, 2)
    xs = list(range(len(names)))
    bars = throughput.bar(xs, [o.metrics.get("throughput_rps") or 0 for o in outcomes], color=COLORS[0])
    throughput.bar_label(bars, fmt="%.0f", fontsize=8)
    throughput.set_title("Throughput (answered requests/s)")
    for index, key in enumerate(("p50_ms", "p90_ms", "p99_ms")):
        latency.bar(
            [x + (index - 1) * 0.27 for x in xs],
            [o.metrics.get(key) or 0 for o in outcomes],
            0.27,
            label=key.removesuffix("_ms"),
            color=COLORS[index],
        )
    latency.set_title("Latency (ms)")
    latency.legend(fontsize=8)
    attribute = "instance" if any(r.instance for o in outcomes for r in o.records) else "served_by"
    members = sorted({getattr(r, attribute) for o in outcomes for r in o.records if getattr(r, attribute)})
    bottoms = [0.0] * len(outcomes)
    for index, member in enumerate(members):
        values = [o.metrics.get(f"share.{member}", 0.0) or 0.0 for o in outcomes]
        split.bar(xs, values, bottom=bottoms, label=member, color=COLORS[index % len(COLORS)])
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    # The entry names the instance behind it (X-Served-By); /process answers name the one that processed it.
    by = {service_of(member) for member in members}
    split.set_title("Share of requests by " + (", ".join(sorted(by)) or "instance"))
    if members:
        split.legend(fontsize=7)
    if any(o.metrics.get("database_reads") for o in outcomes):
        bars = extra.bar(xs, [o.metrics.get("database_reads") or 0 for o in outcomes], color=COLORS[3])
        extra.set_title("Database reads by the gateways")
    else:
        ratios = [o.metrics.get("error_ratio") or 0 for o in outcomes]
        bars = extra.bar(xs, ratios, color=COLORS[3])
        extra.set_ylim(0, max(max(ratios) * 1.2, 0.01))
        extra.set_title("Error ratio")
    extra.bar_label(bars, fmt="%.3g", fontsize=8)
    for axes in (throughput, latency, split, extra):
        axes.set_xticks(xs, names, fontsize=8, rotation=90 if many else 0)
    return _save(figure, path)


def plot_failover(outcomes: Sequence[VariantOutcome], path: Path) -> Path | None:
    """Draw each kill or pause: measured detection beside the predicted bound, and the times to recover."""
    events = [event for o in outcomes for event in o.events]
    if not events:
        return None
    figure = _figure(max(8.0, 1.4 * len(events)), 4)
    axes = figure.add_subplot()
    series = (
        ("detected (measured)", "detected_after", COLORS[3]),
        ("detection bound (predicted)", "predicted", "#bbbbbb"),
        ("back in every pool (after the start)", "marked_up_after", COLORS[0]),
        ("serving again (after the start)", "serving_after", COLORS[2]),
    )
    xs = list(range(len(events)))
    width = 0.2
    for index, (label, attribute, color) in enumerate(series):
        values = [getattr(event, attribute) or 0.0 for event in events]
        bars = axes.bar([x + (index - 1.5) * width for x in xs], values, width, label=label, color=color)
        axes.bar_label(bars, fmt="%.2f", fontsize=7)
    axes.set_xticks(xs, [f"{e.action} {e.instance}\nat {e.offset or 0:.1f} s" for e in events], fontsize=8)
    axes.set_ylabel("seconds")
    axes.set_title("Failover: detection (from the pools' own timestamps) and recovery")
    axes.legend(fontsize=8)
    return _save(figure, path)


def scaling_law(experiment: Experiment, outcomes: Sequence[VariantOutcome]) -> tuple[UslFit | None, str]:
    """Return the Universal Scalability Law fitted to the experiment's ``scaling_law`` metric, or why there is none."""
    if experiment.scaling_law is None:
        return None, ""
    instances = {variant.name: variant.instances for variant in experiment.variants}
    points = [
        (instances[outcome.name], outcome.metrics.get(experiment.scaling_law) or 0.0)
        for outcome in outcomes
        if instances.get(outcome.name) is not None
    ]
    try:
        return fit_usl(points), ""
    except ValueError as exc:
        return None, f"no scaling-law fit: {exc}"


def describe_fit(result: UslFit) -> dict[str, Any]:
    """Return the fit for summary.json and the report: coefficients, peak, knee and each point beside the law."""
    return {
        "lambda": result.lam,
        "sigma": result.sigma,
        "kappa": result.kappa,
        "peak_instances": result.peak_instances,
        "peak_throughput": result.peak_throughput,
        "knee": result.knee,
        "largest_gap": result.residual(),
        "points": [{"instances": n, "measured": x, "predicted": result.predict(n)} for n, x in result.points],
    }


def plot_scaling_law(result: UslFit, metric: str, path: Path) -> Path:
    """Draw the measured points and the fitted law, with its peak and knee marked."""
    figure = _figure()
    axes = figure.subplots()
    largest = max(n for n, _ in result.points)
    reach = (
        largest + 2 if math.isinf(result.peak_instances) else max(largest + 2, math.ceil(result.peak_instances * 1.3))
    )
    xs = [1 + step * (min(reach, 64) - 1) / 200 for step in range(201)]
    axes.plot(xs, [result.predict(x) for x in xs], color=COLORS[0], label="Universal Scalability Law (fitted)")
    axes.plot(xs, [result.lam * x for x in xs], color=COLORS[7], linestyle=":", label="linear (no contention)")
    axes.scatter([n for n, _ in result.points], [x for _, x in result.points], color=COLORS[1], zorder=3,
                 label="measured")  # fmt: skip
    axes.axvline(result.knee, color=COLORS[2], linestyle="--", label=f"knee ({result.knee})")
    if not math.isinf(result.peak_instances) and result.peak_instances <= xs[-1]:
        axes.axvline(
            result.peak_instances, color=COLORS[3], linestyle="--", label=f"peak ({result.peak_instances:.1f})"
        )
    axes.set_ylim(0, max(x for _, x in result.points) * 1.6)
    axes.set_xlabel("instances")
    axes.set_ylabel(metric)
    axes.set_title(f"Scaling law: sigma {result.sigma:.3f} (contention), kappa {result.kappa:.4f} (coherency)")
    axes.legend(fontsize=8)
    return _save(figure, path)


def draw_plots(outcomes: Sequence[VariantOutcome], directory: Path) -> dict[str, Path]:
    """Draw every plot that the data allows into ``directory``; return them by kind."""
    drawn: dict[str, Path | None] = {
        "histogram": plot_histogram(outcomes, directory / PLOTS["histogram"]),
        "gateways": plot_split(outcomes, "served_by", "Requests per gateway", directory / PLOTS["gateways"]),
        "instances": plot_split(
            outcomes, "instance", "Requests per microservice instance", directory / PLOTS["instances"]
        ),
        "variants": plot_variants(outcomes, directory / PLOTS["variants"]),
        "failover": plot_failover(outcomes, directory / PLOTS["failover"]),
    }
    if len(outcomes) == 1 and any(r.endpoint == "data_new" and r.cached for r in outcomes[0].records):
        # Only repeated new keys make a miss-then-hits comparison; hot keys missed once, long ago.
        drawn["caching"] = plot_caching(outcomes[0], directory / PLOTS["caching"])
        drawn["timeline"] = plot_timeline(outcomes[0], directory / PLOTS["timeline"])
    return {kind: path for kind, path in drawn.items() if path is not None}


# ---------------------------------------------------------------------------- report.html

# report.html and its partials, shipped as package data beside this module.
TEMPLATES = "templates"
REPORT_TEMPLATE = "report.html"


@functools.cache
def _templates() -> Environment:
    """Return the Jinja2 environment of the report's templates, made once and shared (rendering is thread-safe)."""
    environment = Environment(
        loader=PackageLoader("scalelab.experiments", TEMPLATES),
        # Names, notes, labels and error texts come from experiment files and the stack: escape every value,
        # and default to escaping so that a partial with another extension cannot become the hole.
        autoescape=select_autoescape(enabled_extensions=("html",), default=True),
        undefined=StrictUndefined,  # a misspelt field fails the tests instead of rendering as nothing
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["number"] = _number
    return environment


def _number(value: Any) -> str:
    """Format a measured value for a table cell: ``-`` for none, thousands separated, at most three decimals."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


# What the expected-versus-measured table shows of each variant.
EXPECTED_COLUMNS = ("error_ratio", "lost", "p50_ms", "p99_ms", "max_ms")


def render_html(summary: dict[str, Any], plots: dict[str, Path], checks: Sequence[CheckResult]) -> str:
    """Return report.html's text: verdict, checks, metrics, failover, plots (embedded) and configuration."""
    variants = summary["variants"]
    shown = [m for m in METRICS if any(v["metrics"].get(m) is not None for v in variants)]
    shares = sorted({m for v in variants for m in v["metrics"] if m.startswith(("share.", CPU_PREFIX))})
    actions = [(v["name"], "setup", a) for v in variants for a in v["setup"]]
    actions += [(v["name"], "timeline", a) for v in variants for a in v["timeline"]]
    return (
        _templates()
        .get_template(REPORT_TEMPLATE)
        .render(
            summary=summary,
            checks=checks,
            failed=[check for check in checks if not check.passed],
            variant_names=[v["name"] for v in variants],
            expected=[
                {
                    "variant": v["name"],
                    "expect": summary.get("expected", {}).get(v["name"], ""),
                    "checks": [c for c in checks if c.variant == v["name"]],
                    "measured": {m: v["metrics"].get(m) for m in EXPECTED_COLUMNS},
                }
                for v in variants
                if summary.get("expected", {}).get(v["name"])
            ],
            expected_columns=EXPECTED_COLUMNS,
            metrics=[
                {
                    "name": m,
                    "meaning": METRICS.get(
                        m, "CPU ms per answered request" if m.startswith(CPU_PREFIX) else "share of answered requests"
                    ),
                    "per_variant": [v["metrics"].get(m) for v in variants],
                }
                for m in [*shown, *shares]
            ],
            events=[event for v in variants for event in v["failover"]],
            actions=[
                {
                    "variant": name,
                    "when": when,
                    "label": a["label"],
                    "offset": a["offset"],
                    "took": round(a["finished"] - a["started"], 3),
                    "error": a["error"],
                }
                for name, when, a in actions
            ],
            # Embedded, not linked: the page stays whole when copied or mailed without its directory.
            images=[
                {"kind": kind, "data": base64.b64encode(path.read_bytes()).decode("ascii")}
                for kind, path in plots.items()
            ],
            config=yaml.safe_dump(summary["config"], sort_keys=False),
        )
    )


def write_report(
    directory: Path,
    experiment: Experiment,
    outcomes: Sequence[VariantOutcome],
    checks: Sequence[CheckResult],
    target: str,
    started: float,
    finished: float,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """Write requests.csv, the plots, summary.json and report.html into ``directory``; return the summary."""
    directory.mkdir(parents=True, exist_ok=True)
    write_csv(directory / "requests.csv", [record for outcome in outcomes for record in outcome.records])
    plots = draw_plots(outcomes, directory)
    fitted, no_fit = scaling_law(experiment, outcomes)
    if fitted is not None:
        plots["scaling_law"] = plot_scaling_law(fitted, str(experiment.scaling_law), directory / PLOTS["scaling_law"])
    notes = [*notes, no_fit] if no_fit else list(notes)
    passed = all(check.passed for check in checks)
    summary: dict[str, Any] = {
        "experiment": experiment.name,
        "description": experiment.description,
        "explanation": experiment.notes,
        "source": experiment.source,
        "target": target,
        "seed": experiment.load.seed,
        "started": datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "finished": datetime.fromtimestamp(finished).isoformat(timespec="seconds"),
        "duration_seconds": round(finished - started, 3),
        "passed": passed,
        "failed_checks": [check.label for check in checks if not check.passed],
        "checks": [check.to_dict() for check in checks],
        "notes": list(notes),
        "variants": [outcome.to_dict() for outcome in outcomes],
        # What each variant was expected to show, beside what it measured (fault-matrix and the like).
        "expected": {variant.name: variant.expect for variant in experiment.variants if variant.expect},
        "scaling_law": None if fitted is None else {"metric": experiment.scaling_law, **describe_fit(fitted)},
        "config": experiment.raw,
        "files": {
            "report": "report.html",
            "summary": "summary.json",
            "requests": "requests.csv",
            "plots": {kind: path.name for kind, path in plots.items()},
        },
    }
    (directory / "summary.json").write_text(json.dumps(_plain(summary), indent=2, allow_nan=False))
    (directory / "report.html").write_text(render_html(summary, plots, checks))
    return summary


def _plain(value: Any) -> Any:
    """Return ``value`` as strict JSON data: infinities become null, tuples and sets lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(item) for item in value]
    if value is None or isinstance(value, str | int | bool):
        return value
    return str(value)


def list_results(results_dir: str | Path) -> list[dict[str, Any]]:
    """Return the summary of every run under ``results_dir``, newest first, each with its ``directory``."""
    runs = []
    for path in sorted(Path(results_dir).glob("*/summary.json"), reverse=True):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a run being written, or a file that is not ours
        runs.append({**summary, "directory": str(path.parent)})
    return runs
