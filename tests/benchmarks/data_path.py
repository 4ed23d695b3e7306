"""Benchmark the cache-hit `GET /data` path: our balancer vs nginx and HAProxy in front of the same gateways.

A script, not a test: it prints figures. It starts its own stack on spare ports (or uses one
already running with --run-dir), puts nginx (one worker, upstream keep-alive) and HAProxy (one
thread, connection reuse) in front of the same two gateways, and drives each target, and one
gateway directly, with wrk at 8 and 32 connections, alternating the order round by round so that
the machine's noise falls on all of them alike. It reports the median of the rounds and the
median of the per-round ratios.

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
from dataclasses import dataclass
from pathlib import Path

import requests

from scalelab.orchestrators.local import yield_cpu
from tests.benchmarks.running import stack

PORT_OFFSET = 30_000
NGINX_PORT = 38_088
HAPROXY_PORT = 38_090  # not 38_089: the load engine of the stack moved by 30,000
CONNECTIONS = (8, 32)
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Run:
    """One wrk run: throughput and latency percentiles (ms)."""

    rps: float
    p50: float
    p99: float
    errors: int


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


def wrk(url: str, token: str, connections: int, seconds: int) -> Run:
    """Drive ``url`` with wrk for ``seconds`` at ``connections`` keep-alive connections."""
    result = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-H", f"Authorization: {token}", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return parse_wrk(result.stdout)


@contextmanager
def nginx_in_front_of(gateways: list[str], port: int) -> Iterator[str]:
    """Run nginx (one worker, keep-alive to the upstreams) in front of ``gateways``; yield its URL."""
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
        with serving([binary, "-c", str(conf)], f"http://127.0.0.1:{port}") as url:
            yield url


@contextmanager
def haproxy_in_front_of(gateways: list[str], port: int) -> Iterator[str]:
    """Run HAProxy (one thread, connections to the gateways reused) in front of ``gateways``; yield its URL."""
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
        with serving([binary, "-db", "-f", str(conf)], f"http://127.0.0.1:{port}") as url:
            yield url


@contextmanager
def serving(command: list[str], url: str) -> Iterator[str]:
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
        yield url
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
        ports = {info.name: info.port for info in orchestrator.instances()}
        gateways = [f"http://127.0.0.1:{ports[name]}" for name in ("gateway-1", "gateway-2")]
        balancer = f"http://127.0.0.1:{ports['load-balancer']}"
        nginx = exits.enter_context(nginx_in_front_of(gateways, NGINX_PORT))
        haproxy = exits.enter_context(haproxy_in_front_of(gateways, HAPROXY_PORT))
        token = requests.get(balancer + "/token", timeout=5).json()["token"]
        for url in (balancer, *gateways):  # warm the key into the cache
            requests.get(url + "/data", headers={"Authorization": token}, timeout=5).raise_for_status()
        targets = {"balancer": balancer, "nginx": nginx, "haproxy": haproxy, "one gateway": gateways[0]}
        runs: dict[tuple[str, int], list[Run]] = {}
        for round_no in range(args.rounds):
            for connections in CONNECTIONS:
                order = list(targets) if round_no % 2 == 0 else list(reversed(targets))
                for name in order:
                    run = wrk(targets[name] + "/data", token, connections, args.seconds)
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
    if args.json:
        args.json.write_text(json.dumps(medians, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
