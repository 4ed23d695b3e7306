"""Per-request records: a CSV round trip, and the statistics a variant reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalelab.experiments.records import Record, percentile, read_csv, request_metrics, shares, write_csv


def record(seq: int, latency: float | None = 10.0, status: int = 200, **fields: object) -> Record:
    return Record("v", seq, 1000.0 + seq * 0.1, latency, status, fields.pop("endpoint", "data_hot"), **fields)  # type: ignore[arg-type]


def test_records_survive_a_csv_round_trip(tmp_path: Path) -> None:
    rows = [
        record(0, served_by="gateway-1", gateway_id="1", cached=True, key="hot-1"),
        record(1, None, 0, endpoint="process", error="ConnectionRefusedError: no"),
        record(2, 12.5, 200, endpoint="process", instance="microservice-2", service_id="2", served_by="gateway-2"),
    ]
    write_csv(tmp_path / "r.csv", rows)
    assert read_csv(tmp_path / "r.csv") == rows
    header = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert header.startswith("variant,seq,sent_at,latency_ms,status,endpoint,key,served_by")


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    assert percentile([], 50) is None


def test_metrics_count_errors_lost_and_latency() -> None:
    rows = [record(n, float(n + 1), served_by="gateway-1" if n % 2 else "gateway-2") for n in range(8)]
    rows += [record(8, 500.0, 503), record(9, None, 0)]
    metrics = request_metrics(rows)
    assert (metrics["requests"], metrics["answered"], metrics["errors"], metrics["lost"]) == (10, 9, 2, 1)
    assert metrics["error_ratio"] == 0.2
    assert metrics["max_ms"] == 500.0 and metrics["p50_ms"] == 5.0
    assert metrics["share.gateway-1"] == metrics["share.gateway-2"] == 0.5
    assert metrics["gateway_imbalance"] == 0.0
    assert metrics["instance_imbalance"] is None
    assert metrics["throughput_rps"] == pytest.approx(9 / (0.8 + 0.5 - 0.0))


def test_shares_and_imbalance_of_an_uneven_split() -> None:
    rows = [record(n, instance="microservice-1" if n < 6 else "microservice-2") for n in range(8)]
    assert shares(rows, "instance") == {"microservice-1": 0.75, "microservice-2": 0.25}
    assert request_metrics(rows)["instance_imbalance"] == 0.25


def test_cache_speedup_is_miss_over_hit_latency() -> None:
    rows = [record(0, 60.0, cached=False), record(1, 4.0, cached=True), record(2, 6.0, cached=True)]
    metrics = request_metrics(rows)
    assert (metrics["miss_mean_ms"], metrics["hit_mean_ms"], metrics["cache_speedup"]) == (60.0, 5.0, 12.0)
    assert metrics["cache_hit_ratio"] == pytest.approx(2 / 3)
