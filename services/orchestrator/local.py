"""Run the stack as local processes: one process group per instance, state kept in a run directory.

Every CLI call reads and writes ``state.json`` under a file lock, so a stack started by
``scalelab up`` can be controlled from another terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..kit.health import check_health
from ..observability.scrape import REPO_PROMETHEUS_DIR, write_config
from .base import InstanceInfo, Orchestrator, OrchestratorError
from .membership import BALANCED_BY, announce, withdraw
from .topology import (
    EXTRA_PORT_BASE,
    Secrets,
    dashboard_spec,
    default_topology,
    instance_env,
    loadgen_spec,
    prometheus_spec,
    service_of,
)

__all__ = ["REQUIRED_MODULES", "LocalOrchestrator"]

HEALTH_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1
REQUIRED_MODULES = (
    "flask", "granian", "aiohttp", "httptools", "prometheus_client", "jwt", "cachetools", "locust", "dash",
    "dash_bootstrap_components",
)  # fmt: skip
LOG_TAIL_LINES = 15
# The variable listing a balancing service's backends, so a removed instance leaves a peer's
# environment too: a peer restarted later must not take it back into its pool.
MEMBERS_ENV = {"gateway": "GATEWAY_MICROSERVICES", "load-balancer": "BALANCER_BACKENDS"}
# Processes this Python process started, kept for its whole life: polling them reaps the exited
# ones (no zombies) without touching children started by anything else.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def process_state(pid: int | None) -> str:
    """Return ``running``, ``paused`` or ``stopped`` for a process id, from /proc."""
    if not pid:
        return "stopped"
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "stopped"
    state = stat.rpartition(")")[2].split()[0]
    if state in ("Z", "X"):
        return "stopped"
    return "paused" if state in ("T", "t") else "running"


def port_free(port: int) -> bool:
    """Return whether nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As the servers do: connections in TIME_WAIT must not count as "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def healthy(port: int, timeout: float = 0.5, path: str = "/health") -> bool:
    """Return whether ``GET <path>`` on 127.0.0.1:``port`` answers 200."""
    try:
        check_health("127.0.0.1", port, path, timeout)
    except (OSError, http.client.HTTPException):
        return False
    return True


class LocalOrchestrator(Orchestrator):
    """Start and control the stack's instances as processes on this machine."""

    def __init__(self, run_dir: str | Path, python: str = sys.executable) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.python = python
        self.state_path = self.run_dir / "state.json"
        self.log_dir = self.run_dir / "logs"
        self.data_dir = self.run_dir / "data"

    # ---------------------------------------------------------------- state
    @contextlib.contextmanager
    def _locked_state(self) -> Iterator[dict[str, Any]]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "state.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"instances": {}}
            yield state
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            tmp.replace(self.state_path)

    def _state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"instances": {}}
        return json.loads(self.state_path.read_text())

    def secrets(self) -> Secrets | None:
        """Return the running stack's secrets (for the CLI's control calls), if a stack was started."""
        raw = self._state().get("secrets")
        return Secrets(**raw) if raw else None

    def _info(self, name: str, entry: dict[str, Any]) -> InstanceInfo:
        return InstanceInfo(
            name,
            entry["service"],
            entry["port"],
            process_state(entry.get("pid")),
            entry.get("pid"),
            entry.get("health_path", "/health"),
        )

    def instances(self) -> list[InstanceInfo]:
        return [self._info(name, entry) for name, entry in self._state()["instances"].items()]

    def running(self) -> list[InstanceInfo]:
        """Return the instances whose process is alive (running or paused)."""
        return [info for info in self.instances() if info.state != "stopped"]

    # ---------------------------------------------------------------- whole stack
    def up(self, secrets: Secrets, port_offset: int = 0, prometheus: str | None = None) -> list[InstanceInfo]:
        """Start every instance, wait until all are healthy, and return them.

        With ``prometheus`` (the path of its binary), a Prometheus scraping the stack runs too.

        Raise OrchestratorError (with nothing left running) on a taken port, a missing
        dependency or an instance that fails to start.
        """
        alive = self.running()
        if alive:
            names = ", ".join(info.name for info in alive)
            raise OrchestratorError(f"a stack is already running from {self.run_dir} ({names}); `scalelab down` first")
        missing = [module for module in REQUIRED_MODULES if importlib.util.find_spec(module) is None]
        if missing:
            raise OrchestratorError(
                f"missing Python package(s) {', '.join(missing)}: install ScaleLab with `pip install -e .`"
            )
        specs = [*default_topology(secrets, self.data_dir, port_offset), loadgen_spec(self.python, port_offset)]
        if prometheus:
            specs.append(prometheus_spec(prometheus, self.prometheus_dir, port_offset))
        specs.append(dashboard_spec(self.python, self.run_dir, port_offset))
        taken = [spec for spec in specs if not port_free(spec.port)]
        if taken:
            listing = ", ".join(f"{spec.name} needs port {spec.port}" for spec in taken)
            raise OrchestratorError(
                f"port(s) already in use: {listing}. Stop what holds them (another ScaleLab? `scalelab down`) "
                "or move the whole stack with --port-offset"
            )
        with self._locked_state() as state:
            state.clear()
            state.update(port_offset=port_offset, secrets=asdict(secrets), instances={})
            for spec in specs:
                state["instances"][spec.name] = {
                    "service": spec.service,
                    "port": spec.port,
                    "env": spec.env,
                    "command": spec.command,
                    "health_path": spec.health_path,
                    "pid": None,
                }
            self._write_prometheus_config(state)
        try:
            for spec in specs:
                self._spawn(spec.name)
            for spec in specs:
                self._wait_healthy(spec.name)
        except BaseException:
            self.down()
            raise
        return self.instances()

    def down(self) -> list[str]:
        """Stop every instance (paused ones too) and return the names that were running."""
        stopped = []
        with self._locked_state() as state:
            entries = state.get("instances", {})
            for name, entry in entries.items():
                if process_state(entry.get("pid")) != "stopped":
                    self._signal(entry["pid"], signal.SIGCONT)
                    self._signal(entry["pid"], signal.SIGTERM)
                    stopped.append(name)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for entry in entries.values():
                while process_state(entry.get("pid")) != "stopped" and time.monotonic() < deadline:
                    self.reap()
                    time.sleep(POLL_SECONDS)
                if process_state(entry.get("pid")) != "stopped":
                    self._signal(entry["pid"], signal.SIGKILL)
                entry["pid"] = None
        self.reap()
        return stopped

    # ---------------------------------------------------------------- one instance
    def kill(self, name: str) -> InstanceInfo:
        info = self.get(name)
        if info.state == "stopped":
            raise OrchestratorError(f"{name} is not running; start it with `scalelab start {name}`")
        self._signal(info.pid, signal.SIGKILL)
        # Wait for the whole group (the server's worker process too) to let go of the port.
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while (process_state(info.pid) != "stopped" or not port_free(info.port)) and time.monotonic() < deadline:
            self.reap()
            time.sleep(POLL_SECONDS / 5)
        return self.get(name)

    def start(self, name: str) -> InstanceInfo:
        info = self.get(name)
        if info.state != "stopped":
            raise OrchestratorError(f"{name} is already {info.state} (pid {info.pid}); kill it first to restart it")
        if not port_free(info.port):
            raise OrchestratorError(f"cannot start {name}: port {info.port} is in use by another process")
        self._spawn(name)
        self._wait_healthy(name)
        return self.get(name)

    def pause(self, name: str) -> InstanceInfo:
        info = self.get(name)
        if info.state != "running":
            raise OrchestratorError(f"{name} is {info.state}, not running: nothing to pause")
        self._signal(info.pid, signal.SIGSTOP)
        return self.get(name)

    def resume(self, name: str) -> InstanceInfo:
        info = self.get(name)
        if info.state != "paused":
            raise OrchestratorError(f"{name} is {info.state}, not paused: nothing to resume")
        self._signal(info.pid, signal.SIGCONT)
        return self.get(name)

    def add(self, service: str) -> InstanceInfo:
        with self._locked_state() as state:
            entries = state.get("instances", {})
            if not entries or "secrets" not in state:
                raise OrchestratorError("no stack has been started here; run `scalelab up` first")
            if service not in ("microservice", "gateway"):
                raise OrchestratorError(f"cannot add a {service!r}: only microservice and gateway instances scale out")
            numbers = [int(n.rpartition("-")[2]) for n in entries if service_of(n) == service]
            name = f"{service}-{max(numbers, default=0) + 1}"
            used = {entry["port"] for entry in entries.values()}
            port = next(
                p
                for p in range(EXTRA_PORT_BASE + state.get("port_offset", 0), 65_535)
                if p not in used and port_free(p)
            )
            ports = {n: entry["port"] for n, entry in entries.items()} | {name: port}
            env = instance_env(name, port, ports, Secrets(**state["secrets"]), self.data_dir)
            entries[name] = {"service": service, "port": port, "env": env, "pid": None}
            self._write_prometheus_config(state)
            admin_token = state["secrets"]["admin_token"]
        self._spawn(name)
        self._wait_healthy(name)
        info = self.get(name)
        balancer, path = BALANCED_BY[service]
        peers = [peer.url for peer in self.instances() if peer.service == balancer and peer.state == "running"]
        announce(name, info.url, path, peers, admin_token)
        return info

    def remove(self, name: str) -> None:
        # The state stays locked throughout, so two removals at once cannot both pass the
        # "not the last one" check; nothing is written back when a step fails.
        with self._locked_state() as state:
            entries = state.get("instances", {})
            if name not in entries:
                self.get(name)  # raises UnknownInstance naming the known ones
            info = self._info(name, entries[name])
            if info.service not in BALANCED_BY:
                raise OrchestratorError(
                    f"cannot remove {name}: only microservice and gateway instances scale in; "
                    f"`scalelab kill {name}` stops it"
                )
            others = [
                n for n, entry in entries.items()
                if n != name and entry["service"] == info.service and process_state(entry.get("pid")) == "running"
            ]  # fmt: skip
            if not others:
                raise OrchestratorError(
                    f"cannot remove {name}: it is the last running {info.service}, and without one every request "
                    f"that needs it would fail; `scalelab add {info.service}` (or start a stopped one) first"
                )
            balancer, path = BALANCED_BY[info.service]
            peers = [self._info(n, entry) for n, entry in entries.items() if entry["service"] == balancer]
            paused = [peer.name for peer in peers if peer.state == "paused"]
            if paused:  # it could not drop the instance now, and would send to it once resumed
                raise OrchestratorError(
                    f"cannot remove {name}: {', '.join(paused)} is paused and cannot take it out of its pool; "
                    f"`scalelab resume {paused[0]}` first"
                )
            running = [peer.url for peer in peers if peer.state == "running"]
            withdraw(name, path, running, state["secrets"]["admin_token"])
            self._terminate(info)
            del entries[name]
            for peer in peers:
                self._drop_member(entries[peer.name], name)
            self._write_prometheus_config(state)

    @staticmethod
    def _drop_member(entry: dict[str, Any], name: str) -> None:
        """Delete ``name=url`` from a balancing instance's list of backends in its saved environment."""
        key = MEMBERS_ENV[entry["service"]]
        if key in entry["env"]:  # absent, the service's default list applies: leave it so
            members = entry["env"][key].split(",")
            entry["env"][key] = ",".join(m for m in members if m and m.partition("=")[0] != name)

    def _terminate(self, info: InstanceInfo) -> None:
        """Stop an instance's process group: SIGTERM, then SIGKILL if it is not gone after the grace period."""
        if info.state == "stopped":
            return  # already gone: its port may even belong to someone else by now
        self._signal(info.pid, signal.SIGCONT)  # a paused process would not act on SIGTERM
        self._signal(info.pid, signal.SIGTERM)
        for sig in (signal.SIGKILL, None):
            # Wait for the whole group (the server's worker process too) to let go of the port.
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            while (process_state(info.pid) != "stopped" or not port_free(info.port)) and time.monotonic() < deadline:
                self.reap()
                time.sleep(POLL_SECONDS / 5)
            if process_state(info.pid) == "stopped" and port_free(info.port):
                return
            if sig is not None:
                self._signal(info.pid, sig)
        raise OrchestratorError(
            f"{info.name} was taken out of rotation and killed, but port {info.port} is still held after "
            f"{2 * STOP_GRACE_SECONDS:.0f} s; find the holder with `ss -ltnp 'sport = :{info.port}'`"
        )

    # ---------------------------------------------------------------- prometheus
    @property
    def prometheus_dir(self) -> Path:
        """Where the local Prometheus keeps its configuration, rules and data."""
        return self.run_dir / "prometheus"

    def _write_prometheus_config(self, state: dict[str, Any]) -> None:
        """Point the local Prometheus (if the stack has one) at every instance's port."""
        entries = state.get("instances", {})
        if "prometheus" not in entries:
            return
        shutil.copytree(REPO_PROMETHEUS_DIR / "rules", self.prometheus_dir / "rules", dirs_exist_ok=True)
        scraped = [
            (name, entry["service"], f"127.0.0.1:{entry['port']}")
            for name, entry in entries.items()
            if entry["service"] != "prometheus"
        ]
        write_config(self.prometheus_dir, scraped, f"127.0.0.1:{entries['prometheus']['port']}")

    # ---------------------------------------------------------------- processes
    def _spawn(self, name: str) -> None:
        with self._locked_state() as state:
            entry = state["instances"][name]
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with open(self.log_dir / f"{name}.log", "ab") as log:
                process = subprocess.Popen(
                    entry.get("command") or [self.python, "-m", "services", entry["service"]],
                    env={**os.environ, **entry["env"], "PYTHONUNBUFFERED": "1"},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.run_dir,
                    start_new_session=True,  # its own process group: signals reach gunicorn's worker too
                )
            _CHILDREN[process.pid] = process
            entry["pid"] = process.pid

    def _wait_healthy(self, name: str, timeout: float = HEALTH_TIMEOUT_SECONDS) -> None:
        info = self.get(name)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if healthy(info.port, path=info.health_path):
                return
            self.reap()
            if process_state(info.pid) == "stopped":
                raise OrchestratorError(f"{name} (port {info.port}) exited while starting. {self.log_tail(name)}")
            time.sleep(POLL_SECONDS)
        raise OrchestratorError(
            f"{name} (port {info.port}) was not healthy within {timeout:.0f} s. {self.log_tail(name)}"
        )

    def log_tail(self, name: str) -> str:
        """Return the last lines of an instance's log, for error messages."""
        path = self.log_dir / f"{name}.log"
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return f"(no log at {path})"
        return f"Last lines of {path}:\n" + "\n".join("  " + line for line in lines)

    @staticmethod
    def _signal(pid: int | None, sig: signal.Signals) -> None:
        if not pid:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    @staticmethod
    def reap() -> None:
        """Collect instances this process started that have exited, so none lingers as a zombie."""
        for pid, process in list(_CHILDREN.items()):
            if process.poll() is not None:
                del _CHILDREN[pid]
