"""Benchmark the cache-hit `GET /data` path: our balancer vs nginx and HAProxy in front of the same gateways.

A script, not a test: it prints figures. It starts its own stack on spare ports (or uses one
already running with --run-dir), puts nginx (one worker, upstream keep-alive) and HAProxy (one
thread, connection reuse) in front of the same two gateways, and drives each target, and one
gateway directly, with wrk at 8 and 32 connections, alternating the order round by round so that
the machine's noise falls on all of them alike. It reports the median of the rounds and the
median of the per-round ratios, and what each request cost each hop in CPU time: the balancer in
front (ours, nginx's worker or HAProxy), the two gateways together and the cache, read from /proc
over each run and divided by the requests served in it.

    python -m tests.benchmarks.data_path [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from scalelab.orchestrators.base import InstanceInfo
from scalelab.orchestrators.local import yield_cpu
from tests.benchmarks.proc import cpu_seconds, processes
from tests.benchmarks.running import stack

PORT_OFFSET = 30_000
NGINX_PORT = 38_088
HAPROXY_PORT = 38_090  # not 38_089: the load engine of the stack moved by 30,000
CONNECTIONS = (8, 32)
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Run:
    """One wrk run: throughput, latency percentiles (ms) and, once measured, CPU µs per request by hop."""

    rps: float
    p50: float
    p99: float
    errors: int
    cpu_us: dict[str, float] = field(default_factory=dict)


@dataclass
class Front:
    """A proxy in front of the gateways: where it answers, and its process."""

    url: str
    pid: int


def parse_wrk(output: str) -> Run:
    """Read requests/s, p50, p99 and non-2xx/socket errors out of `wrk --latency` output."""

    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match is None:
            raise ValueError(f"no {pct}% line in wrk output:\n{output}")
        return float(match.group(1)) * UNITS[match.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    errors = int(non2xx.group(1)) if non2xx else 0
    errors += sum(map(int, socket_errors.groups())) if socket_errors else 0
    return Run(rps, latency("50"), latency("99"), errors)


def wrk(url: str, token: str, connections: int, seconds: int, hops: dict[str, list[int]] | None = None) -> Run:
    """Drive ``url`` with wrk for ``seconds`` at ``connections`` keep-alive connections.

    ``hops`` names processes (a hop's pids) whose CPU time per request the run also reports.
    """
    hops = hops or {}
    before = {hop: cpu_seconds(pids) for hop, pids in hops.items()}
    started = time.monotonic()
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: {token}", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    elapsed = time.monotonic() - started  # wrk's own start and stop fall in it too: a slight overcount
    run = parse_wrk(result.stdout)
    served = run.rps * elapsed
    if served:
        run.cpu_us = {hop: (cpu_seconds(pids) - before[hop]) / served * 1e6 for hop, pids in hops.items()}
    return run


@contextmanager
def nginx_in_front_of(gateways: list[str], port: int) -> Iterator[Front]:
    """Run nginx (one worker, keep-alive to the upstreams) in front of ``gateways``."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory(prefix="scalelab-nginx-") as tmp:
        servers = "\n".join(f"    server {g.removeprefix('http://')};" for g in gateways)
        conf = Path(tmp, "nginx.conf")
        conf.write_text(
            textwrap.dedent(f"""\
            worker_processes 1;
            daemon off;
            pid {tmp}/nginx.pid;
            error_log {tmp}/error.log;
            events {{ worker_connections 1024; }}
            http {{
              access_log off;
              client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
              uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
              upstream gateways {{
            {servers}
                keepalive 64;
              }}
              server {{
                listen 127.0.0.1:{port};
                location / {{
                  proxy_pass http://gateways;
                  proxy_http_version 1.1;
                  proxy_set_header Connection "";
                  proxy_set_header Host $host;  # the gateways answer only to their own names
                }}
              }}
            }}
            """)
        )
        with serving([binary, "-c", str(conf)], f"http://127.0.0.1:{port}") as front:
            yield front


@contextmanager
def haproxy_in_front_of(gateways: list[str], port: int) -> Iterator[Front]:
    """Run HAProxy (one thread, connections to the gateways reused) in front of ``gateways``."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    servers = "\n".join(f"  server g{n} {g.removeprefix('http://')}" for n, g in enumerate(gateways, 1))
    with tempfile.TemporaryDirectory(prefix="scalelab-haproxy-") as tmp:
        conf = Path(tmp, "haproxy.cfg")
        conf.write_text(
            textwrap.dedent("""\
            global
              nbthread 1
              maxconn 4096
            defaults
              mode http
              timeout connect 2s
              timeout client 30s
              timeout server 30s
              option http-keep-alive
              http-reuse always
            frontend front
              bind 127.0.0.1:{port}
              default_backend gateways
            backend gateways
              balance roundrobin
            """).format(port=port)
            + servers
            + "\n"
        )
        with serving([binary, "-db", "-f", str(conf)], f"http://127.0.0.1:{port}") as front:
            yield front


@contextmanager
def serving(command: list[str], url: str) -> Iterator[Front]:
    """Run ``command`` until the block ends, once ``url`` answers (a proxy in front of the gateways).

    It runs at the stack's priority, as our balancer does, so that the three compete alike for the CPU.
    """
    process = subprocess.Popen(command, stderr=subprocess.PIPE, start_new_session=True)
    yield_cpu(process.pid)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                requests.get(url + "/token", timeout=1)
                break
            except requests.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[0]} stopped: {process.stderr.read().decode()[-500:]}") from None
                time.sleep(0.1)
        yield Front(url, process.pid)
    finally:
        process.terminate()
        process.wait(10)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table of medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--run-dir", help="benchmark the stack running from this run directory")
    parser.add_argument("--json", type=Path, help="also write the medians here")
    args = parser.parse_args(argv)
    for tool in ("wrk", "nginx", "haproxy"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            sys.exit(f"{tool} is not installed: apt-get install {'nginx-light' if tool == 'nginx' else tool}")

    with ExitStack() as exits:
        orchestrator = exits.enter_context(stack(args.run_dir, PORT_OFFSET, "bench"))
        instances = {info.name: info for info in orchestrator.instances()}
        gateways = [f"http://127.0.0.1:{instances[name].port}" for name in ("gateway-1", "gateway-2")]
        balancer = f"http://127.0.0.1:{instances['load-balancer'].port}"
        nginx = exits.enter_context(nginx_in_front_of(gateways, NGINX_PORT))
        haproxy = exits.enter_context(haproxy_in_front_of(gateways, HAPROXY_PORT))
        token = requests.get(balancer + "/token", timeout=5).json()["token"]
        for url in (balancer, *gateways):  # warm the key into the cache
            requests.get(url + "/data", headers={"Authorization": token}, timeout=5).raise_for_status()
        targets = {"balancer": balancer, "nginx": nginx.url, "haproxy": haproxy.url, "one gateway": gateways[0]}
        fronts = {"balancer": instances["load-balancer"].pid, "nginx": nginx.pid, "haproxy": haproxy.pid}
        hops = hops_of(instances, fronts)
        runs: dict[tuple[str, int], list[Run]] = {}
        for round_no in range(args.rounds):
            for connections in CONNECTIONS:
                order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
                for name in order:
                    run = wrk(targets[name] + "/data", token, connections, args.seconds, hops.get(name))
                    runs.setdefault((name, connections), []).append(run)
                    figures = f"{run.rps:8.0f} req/s  p50 {run.p50:6.1f} ms  p99 {run.p99:6.1f} ms"
                    print(f"round {round_no + 1} c={connections:>2} {name:<12} {figures}  errors {run.errors}")

    medians = {
        f"{name} c={c}": {
            "rps": statistics.median(r.rps for r in rs),
            "p50_ms": statistics.median(r.p50 for r in rs),
            "p99_ms": statistics.median(r.p99 for r in rs),
            "errors": sum(r.errors for r in rs),
        }
        for (name, c), rs in runs.items()
    }
    print(f"\nmedians of {args.rounds} rounds, {args.seconds} s each, cache-hit GET /data")
    print(f"{'target':<20}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for label, m in medians.items():
        print(f"{label:<20}{m['rps']:>8.0f}{m['p50_ms']:>9.1f}{m['p99_ms']:>9.1f}{m['errors']:>8}")
    for c in CONNECTIONS:
        for other in ("nginx", "haproxy"):
            ratios = [o.rps / n.rps for o, n in zip(runs[("balancer", c)], runs[(other, c)], strict=True)]
            print(f"balancer / {other} at c={c}: {statistics.median(ratios):.2f} (median of per-round ratios)")
    costs = cpu_per_request(runs)
    if costs:
        print("\nCPU time per request (µs, medians of the rounds): the balancer in front, the gateways, the cache")
        print(f"{'target':<20}{'front':>8}{'gateways':>10}{'cache':>8}{'chain':>8}")
        for label, cost in costs.items():
            chain = sum(cost.values())
            print(f"{label:<20}{cost.get('front', 0):>8.0f}{cost['gateways']:>10.0f}{cost['cache']:>8.0f}{chain:>8.0f}")
        for label, cost in costs.items():
            medians[label]["cpu_us_per_request"] = cost
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2))
    return 0


def hops_of(instances: dict[str, InstanceInfo], fronts: dict[str, int | None]) -> dict[str, dict[str, list[int]]]:
    """Return, for each target, the processes of each hop a request to it crosses: {target: {hop: pids}}.

    Empty when the stack's instances are not local processes (a compose stack measured with --run-dir).
    """
    pids = {name: info.pid for name, info in instances.items()}
    if any(pids[name] is None for name in ("gateway-1", "gateway-2", "cache", "load-balancer")):
        return {}
    behind = {
        "gateways": processes(pids["gateway-1"]) + processes(pids["gateway-2"]),  # type: ignore[arg-type]
        "cache": processes(pids["cache"]),  # type: ignore[arg-type]
    }
    hops = {name: {"front": processes(pid), **behind} for name, pid in fronts.items() if pid is not None}
    hops["one gateway"] = behind
    return hops


def cpu_per_request(runs: dict[tuple[str, int], list[Run]]) -> dict[str, dict[str, float]]:
    """Return each target's median CPU µs per request by hop, keyed as the medians are ("balancer c=32")."""
    costs = {}
    for (name, c), rs in runs.items():
        measured = [r.cpu_us for r in rs if r.cpu_us]
        if measured:
            costs[f"{name} c={c}"] = {hop: statistics.median(m[hop] for m in measured) for hop in measured[0]}
    return costs


if __name__ == "__main__":
    sys.exit(main())
