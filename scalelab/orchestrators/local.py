"""Run the stack as local processes: one process group per instance, state kept in a run directory.

Every CLI call reads and writes ``state.json`` under a file lock, so a stack started by
``scalelab up`` can be controlled from another terminal.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from scalelab import catalog
from scalelab.catalog import Pool
from scalelab.generate.scrape import write_config
from scalelab.membership import announce, withdraw
from scalelab.orchestrators.base import InstanceInfo, Orchestrator, OrchestratorError
from scalelab.paths import results_dir_for, stack_file
from scalelab.topology import (
    EXTRA_PORT_BASE,
    Secrets,
    dashboard_spec,
    default_topology,
    instance_env,
    loadgen_spec,
    prometheus_spec,
    service_of,
)
from services.kit.health import check_health

__all__ = ["LocalOrchestrator"]

HEALTH_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1
LOG_TAIL_LINES = 15
# Processes this Python process started, kept for its whole life: polling them reaps the exited
# ones (no zombies) without touching children started by anything else.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def process_identity(pid: int | None) -> str | None:
    """Return what tells process ``pid`` apart from a later one given the same id: boot and start time.

    A recorded pid alone is not enough: after a reboot (or a long wait) another process may
    have it, and signalling that one would hit a stranger.
    """
    if not pid:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = BOOT_ID.read_text().strip()
    except OSError:
        return None
    start_ticks = stat.rpartition(")")[2].split()[19]  # field 22 of proc(5): starttime
    return f"{boot}:{start_ticks}"


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


def yield_cpu(pid: int) -> None:
    """Run process ``pid`` below the page and Prometheus (catalog.YIELDING_NICE).

    Set right after the start, before the program has made a thread of its own (the threads it
    makes later inherit it); any thread already there is set too, as Linux keeps a nice per thread.
    Each instance runs in a session of its own, and where the kernel groups tasks by session
    (``sched_autogroup``, on by default on desktops and on these machines) the CPU is shared
    between the groups by the group's nice, not the threads': the group gets it too.
    """
    tasks = Path(f"/proc/{pid}/task")
    threads = [int(t.name) for t in tasks.iterdir()] if tasks.is_dir() else [pid]
    for thread in threads:
        with contextlib.suppress(OSError):  # it may have ended already; it then needs no priority
            os.setpriority(os.PRIO_PROCESS, thread, catalog.YIELDING_NICE)
    with contextlib.suppress(OSError):  # no autogroups in this kernel, or the process ended
        Path(f"/proc/{pid}/autogroup").write_text(str(catalog.YIELDING_NICE))


def healthy(port: int, timeout: float = 0.5, path: str = "/health") -> bool:
    """Return whether ``GET <path>`` on 127.0.0.1:``port`` answers 200."""
    try:
        check_health("127.0.0.1", port, path, timeout)
    except (OSError, http.client.HTTPException):
        return False
    return True


class LocalOrchestrator(Orchestrator):
    """Start and control the stack's instances as processes on this machine."""

    def __init__(
        self, run_dir: str | Path, python: str = sys.executable, results_dir: str | Path | None = None
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.python = python
        self.state_path = self.run_dir / "state.json"
        self.log_dir = self.run_dir / "logs"
        self.data_dir = self.run_dir / "data"
        self.results_dir = Path(results_dir).resolve() if results_dir else results_dir_for(self.run_dir)
        self.where = f"from {self.run_dir}"
        # The state a thread holds under the lock: nested steps of one change see and edit the same copy.
        self._held = threading.local()

    # ---------------------------------------------------------------- state
    @contextlib.contextmanager
    def _locked_state(self) -> Iterator[dict[str, Any]]:
        """Yield the state under the run directory's lock; write it back unless the block raises.

        Re-entrant within a thread: an inner block works on the outer block's copy, which the
        outer block writes (or, when it fails, does not).
        """
        held = getattr(self._held, "state", None)
        if held is not None:
            yield held
            return
        self.run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the stack's secrets
        with open(self.run_dir / "state.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {"instances": {}}
            self._held.state = state
            try:
                yield state
            finally:
                self._held.state = None
            tmp = self.state_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(state, indent=2))
            os.chmod(tmp, 0o600)  # it holds the stack's secrets
            tmp.replace(self.state_path)

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        with self._locked_state():
            yield

    def _state(self) -> dict[str, Any]:
        held = getattr(self._held, "state", None)
        if held is not None:
            return held
        if not self.state_path.exists():
            return {"instances": {}}
        return json.loads(self.state_path.read_text())

    def secrets(self) -> Secrets | None:
        """Return the running stack's secrets (for the CLI's control calls), if a stack was started."""
        raw = self._state().get("secrets")
        return Secrets(**raw) if raw else None

    def admin_token(self) -> str | None:
        secrets = self.secrets()
        return secrets.admin_token if secrets else None

    @staticmethod
    def _live_pid(entry: dict[str, Any]) -> int | None:
        """Return the instance's pid if that process is still the one this stack started, else None."""
        pid = entry.get("pid")
        if pid and entry.get("identity") and process_identity(pid) != entry["identity"]:
            return None  # the pid now belongs to another process: never signal it
        return pid

    def _info(self, name: str, entry: dict[str, Any]) -> InstanceInfo:
        pid = self._live_pid(entry)
        return InstanceInfo(
            name,
            entry["service"],
            entry["port"],
            process_state(pid),
            pid,
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
        specs = [*default_topology(secrets, self.data_dir, port_offset), loadgen_spec(self.python, port_offset)]
        if prometheus:
            specs.append(prometheus_spec(prometheus, self.prometheus_dir, port_offset))
        specs.append(dashboard_spec(self.python, self.run_dir, self.results_dir, port_offset))
        order = {svc.name: index for index, svc in enumerate(catalog.SERVICES)}
        specs.sort(key=lambda spec: order[spec.service])
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
                if process_state(self._live_pid(entry)) != "stopped":
                    self._signal(entry["pid"], signal.SIGCONT)
                    self._signal(entry["pid"], signal.SIGTERM)
                    stopped.append(name)
            deadline = time.monotonic() + STOP_GRACE_SECONDS
            for entry in entries.values():
                while process_state(self._live_pid(entry)) != "stopped" and time.monotonic() < deadline:
                    self.reap()
                    time.sleep(POLL_SECONDS)
                if process_state(self._live_pid(entry)) != "stopped":
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

    def _start_new(self, service: str) -> InstanceInfo:
        with self._locked_state() as state:
            entries = state.get("instances", {})
            if not entries or "secrets" not in state:
                raise OrchestratorError("no stack has been started here; run `scalelab up` first")
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
            self._spawn(name)
        self._wait_healthy(name)
        return self.get(name)

    def _announce(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo]) -> None:
        announce(info.name, info.url, pool.members_route, [peer.url for peer in peers], self._token())

    def _withdraw(self, info: InstanceInfo, pool: Pool, peers: list[InstanceInfo], others: list[InstanceInfo]) -> None:
        withdraw(info.name, pool.members_route, [peer.url for peer in peers], self._token())

    def _stop_and_forget(self, info: InstanceInfo, pool: Pool) -> None:
        self._terminate(info)
        with self._locked_state() as state:
            entries = state["instances"]
            del entries[info.name]
            # A peer restarted later must not take the instance back into its pool.
            for entry in entries.values():
                if entry["service"] == pool.holder and pool.members_env in entry["env"]:
                    members = entry["env"][pool.members_env].split(",")
                    kept = [m for m in members if m and m.partition("=")[0] != info.name]
                    entry["env"][pool.members_env] = ",".join(kept)
            self._write_prometheus_config(state)

    def _token(self) -> str:
        token = self.admin_token()
        if token is None:
            raise OrchestratorError(f"no stack has been started {self.where}; run `scalelab up` first")
        return token

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
        shutil.copytree(stack_file("prometheus", "rules"), self.prometheus_dir / "rules", dirs_exist_ok=True)
        scraped = [
            (name, entry["service"], f"127.0.0.1:{entry['port']}")
            for name, entry in entries.items()
            if catalog.service(entry["service"]).scraped
        ]
        write_config(self.prometheus_dir, scraped, f"127.0.0.1:{entries['prometheus']['port']}")

    # ---------------------------------------------------------------- processes
    def _spawn(self, name: str) -> None:
        with self._locked_state() as state:
            entry = state["instances"][name]
            self.log_dir.mkdir(parents=True, exist_ok=True)
            self.data_dir.mkdir(parents=True, exist_ok=True)
            svc = catalog.service(entry["service"])
            command = entry.get("command") or [self.python, "-m", "services", svc.package]
            with open(self.log_dir / f"{name}.log", "ab") as log:
                process = subprocess.Popen(
                    command,
                    env={**os.environ, **entry["env"], "PYTHONUNBUFFERED": "1"},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.run_dir,
                    start_new_session=True,  # its own process group: signals reach gunicorn's worker too
                )
            if svc.yields_cpu:
                yield_cpu(process.pid)
            _CHILDREN[process.pid] = process
            entry["pid"] = process.pid
            entry["identity"] = process_identity(process.pid)

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
