"""The live charts: one trace per series, scaled and named, and a marker at each action in the window."""

from __future__ import annotations

import time

import pytest

from dashboard.actionlog import Action
from dashboard.charts import CHARTS, MARKER_COLOURS, build_figure
from dashboard.history import MAX_POINTS, History, Sample
from scalelab import catalog

CHART = {chart.id: chart for chart in CHARTS}
T0 = 1_700_000_000.0


def samples(values: dict[str, float], count: int = 3) -> list[Sample]:
    """Return ``count`` one-second samples from T0, all with ``values``."""
    return [Sample(T0 + n, dict(values)) for n in range(count)]


def action(at: float, kind: str = "kill", target: str = "gateway-2", outcome: str = "ok", ident: int = 1) -> Action:
    """Return a logged action at ``at``."""
    return Action(ident, at, kind, target, outcome=outcome)


def test_throughput_draws_one_named_trace_per_series_on_a_date_axis():
    figure = build_figure(CHART["throughput"], samples({"rps": 10.0, "errors": 1.0, "failed": 0.5}), [])
    names = [trace["name"] for trace in figure["data"]]
    assert names == ["requests/s", "5xx/s at the balancer", "failed/s at the clients"]
    assert figure["data"][0]["x"] == [T0 * 1000, (T0 + 1) * 1000, (T0 + 2) * 1000]  # ms since the epoch
    assert figure["data"][0]["y"] == [10.0, 10.0, 10.0]
    assert figure["layout"]["xaxis"]["type"] == "date"
    assert figure["layout"]["yaxis"]["title"]["text"] == "req/s"
    assert figure["layout"]["meta"] == {"chart": "throughput", "samples": 3, "empty": False}


def test_latency_is_drawn_in_milliseconds():
    figure = build_figure(CHART["latency"], samples({"p50": 0.0123, "p95": 0.25, "p99": 1.5}), [])
    assert [trace["name"] for trace in figure["data"]] == ["p50", "p95", "p99"]
    assert [trace["y"][0] for trace in figure["data"]] == [pytest.approx(12.3), 250.0, 1500.0]
    assert figure["layout"]["yaxis"]["title"]["text"] == "ms"
    assert "ms" in figure["data"][0]["hovertemplate"]


def test_cache_hit_ratio_is_drawn_in_percent():
    figure = build_figure(CHART["cache"], samples({"cache.hit_ratio": 0.875}), [])
    assert figure["data"][0]["y"] == [87.5, 87.5, 87.5]
    assert figure["layout"]["yaxis"]["title"]["text"] == "%"


def test_missing_values_stay_gaps():
    data = [Sample(T0, {"db.qps": 2.0}), Sample(T0 + 1, {}), Sample(T0 + 2, {"db.qps": 4.0})]
    figure = build_figure(CHART["database"], data, [])
    assert figure["data"][0]["y"] == [2.0, None, 4.0]


def test_split_charts_stack_one_trace_per_instance_named_after_it():
    values = {"split.gateways.gateway-2": 5.0, "split.gateways.gateway-1": 7.0, "split.microservices.m-1": 1.0}
    figure = build_figure(CHART["split-gateways"], samples(values), [])
    assert [trace["name"] for trace in figure["data"]] == ["gateway-1", "gateway-2"]
    assert {trace["stackgroup"] for trace in figure["data"]} == {"one"}


def test_unstacked_charts_do_not_stack():
    figure = build_figure(CHART["latency"], samples({"p50": 0.1}), [])
    assert "stackgroup" not in figure["data"][0]


def test_a_chart_without_data_says_so_instead_of_drawing_empty_axes():
    figure = build_figure(CHART["queue"], [], [action(T0)])
    assert figure["data"] == []
    assert figure["layout"]["shapes"] == []
    assert [note["text"] for note in figure["layout"]["annotations"]] == ["No reading of the worker's queue yet"]
    assert figure["layout"]["xaxis"] == {"visible": False}  # no time axis dated 1970 without a sample
    assert figure["layout"]["meta"]["empty"] is True


def test_before_any_request_the_rate_charts_say_to_start_the_load():
    figure = build_figure(CHART["throughput"], samples({"rps": 0.0, "errors": 0.0, "failed": 0.0}), [])
    notes = [note["text"] for note in figure["layout"]["annotations"]]
    assert notes == ["No requests yet: press Start load"]
    assert figure["layout"]["xaxis"]["type"] == "date"  # samples there are: their time axis stays
    busy = build_figure(CHART["throughput"], samples({"rps": 4.0}), [])
    assert busy["layout"]["annotations"] == [] and busy["layout"]["meta"]["empty"] is False


def test_a_gauge_at_zero_is_a_reading_not_an_empty_chart():
    figure = build_figure(CHART["queue"], samples({"worker.queue": 0.0}), [])
    assert figure["layout"]["annotations"] == []


def test_each_action_in_the_window_gets_a_vertical_line_and_a_label():
    figure = build_figure(
        CHART["throughput"],
        samples({"rps": 1.0}, count=10),
        [action(T0 + 2, "kill", "gateway-2"), action(T0 + 5, "start", "gateway-2", ident=2)],
    )
    shapes, notes = figure["layout"]["shapes"], figure["layout"]["annotations"]
    assert [shape["x0"] for shape in shapes] == [(T0 + 2) * 1000, (T0 + 5) * 1000]
    assert all(shape["type"] == "line" and shape["x0"] == shape["x1"] for shape in shapes)
    assert all((shape["yref"], shape["y0"], shape["y1"]) == ("paper", 0, 1) for shape in shapes)
    assert [note["text"] for note in notes] == ["kill gateway-2", "start gateway-2"]
    assert [note["x"] for note in notes] == [shape["x0"] for shape in shapes]
    # taking an instance down draws a solid line, bringing it back a dotted one
    assert [shape["line"]["dash"] for shape in shapes] == ["solid", "dot"]


def test_every_press_gets_a_line_and_a_hover_marker_but_only_the_newest_a_written_label():
    presses = [action(T0 + n, "kill", f"gateway-{n}", ident=n) for n in range(1, 7)]
    figure = build_figure(CHART["throughput"], samples({"rps": 1.0}, count=10), presses)
    assert len(figure["layout"]["shapes"]) == 6
    assert [note["text"] for note in figure["layout"]["annotations"]] == [f"kill gateway-{n}" for n in (4, 5, 6)]
    markers = next(trace for trace in figure["data"] if trace["name"] == "presses")
    assert markers["hovertext"] == [f"kill gateway-{n}" for n in range(1, 7)]
    assert markers["yaxis"] == "y2" and figure["layout"]["yaxis2"]["overlaying"] == "y"


def test_actions_before_the_first_sample_are_not_drawn():
    figure = build_figure(CHART["throughput"], samples({"rps": 1.0}), [action(T0 - 0.5), action(T0, ident=2)])
    assert [shape["x0"] for shape in figure["layout"]["shapes"]] == [T0 * 1000]
    assert len(figure["layout"]["annotations"]) == 1


@pytest.mark.parametrize("outcome", ["ok", "pending", "failed"])
def test_markers_are_coloured_by_outcome(outcome):
    figure = build_figure(CHART["database"], samples({"db.qps": 1.0}), [action(T0 + 1, outcome=outcome)])
    colour = MARKER_COLOURS[outcome]
    assert figure["layout"]["shapes"][0]["line"]["color"] == colour
    assert figure["layout"]["annotations"][0]["font"]["color"] == colour


def test_failed_and_ok_markers_look_different():
    assert len({MARKER_COLOURS["ok"], MARKER_COLOURS["pending"], MARKER_COLOURS["failed"]}) == 3


def test_every_chart_keeps_the_users_zoom_across_refreshes():
    for chart in CHARTS:
        assert build_figure(chart, samples({}), [])["layout"]["uirevision"] == chart.id


def test_an_hour_of_every_chart_builds_well_within_one_refresh():
    keys = ["rps", "errors", "failed", "p50", "p95", "p99", "cache.hit_ratio", "db.qps", "worker.queue"]
    keys += [f"split.gateways.gateway-{n}" for n in (1, 2, 3)]
    keys += [f"split.microservices.microservice-{n}" for n in (1, 2, 3, 4)]
    hour = [Sample(T0 + n, {key: (n % 97) / 97 for key in keys}) for n in range(3600)]
    actions = [action(T0 + 60 * n + 30, ("kill", "start")[n % 2], ident=n) for n in range(60)]
    # CPU time, not wall time: the work the page does, whatever else the shared machine runs meanwhile.
    began = time.process_time()
    figures = [build_figure(chart, hour, actions) for chart in CHARTS]
    took = time.process_time() - began
    assert took < 0.5, f"building {len(CHARTS)} charts over an hour took {took:.3f} s of CPU"
    data_traces = [trace for figure in figures for trace in figure["data"] if trace["name"] != "presses"]
    assert len(data_traces) == len(keys)
    assert all(len(figure["layout"]["shapes"]) == 60 for figure in figures)


def test_the_page_draws_an_hour_thinned_to_at_most_max_points_per_line():
    history = History(3600, 1.0)
    for n in range(3600):
        history.add(Sample(T0 + n, {"p50": 0.01, "p95": 0.05, "p99": 0.2}))
    figure = build_figure(CHART["latency"], history.window(3600), [])
    assert [len(trace["x"]) <= MAX_POINTS for trace in figure["data"]] == [True, True, True]
    assert figure["data"][0]["x"][-1] == (T0 + 3599) * 1000  # the right edge is the newest sample


def test_there_is_a_split_chart_per_pool_of_the_catalog():
    pools = [pool.label for _svc, pool in catalog.pool_holders()]
    assert sorted(chart.id for chart in CHARTS if chart.id.startswith("split-")) == sorted(f"split-{p}" for p in pools)
    assert CHART["split-gateways"].prefixes == ("split.gateways.",)
    assert CHART["split-microservices"].title == "Requests by microservice"
