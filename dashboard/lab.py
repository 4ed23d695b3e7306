"""The control app's one composition object: the page reads and changes the stack only through it.

It owns the stack client, the load engine, the action log, the failover tracker and the
history, and runs the sampler that refreshes them once per interval in the background, so a
page refresh only reads what is already there.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from prometheus_client import CollectorRegistry, ProcessCollector

from dashboard.actionlog import Action, ActionLog
from dashboard.config import DashboardConfig
from dashboard.history import History, Sample
from dashboard.sources import DirectSource, PrometheusSource, SourceUnavailable
from scalelab import actions, catalog
from scalelab.autoscaler import Autoscaler, AutoscalerError, Decision, PrometheusSignal, ScalingPolicy, newest_first
from scalelab.catalog import service_of
from scalelab.containerstats import ContainerStatsCollector
from scalelab.failover import FailoverTracker, detection_bound
from scalelab.lessons.spec import Lesson
from scalelab.load.engine import LoadEngine, LoadEngineError, LoadPlan
from scalelab.orchestrators.base import InstanceInfo, Orchestrator, OrchestratorError
from scalelab.stack import ServiceError, StackClient, Tile

__all__ = ["INSTANCE_ACTIONS", "KNOBS", "ExperimentRun", "Knob", "Lab", "LabStatus"]

log = logging.getLogger(__name__)

INSTANCE_ACTIONS = ("kill", "pause", "resume", "start")
# What a press can be, as the action log labels it (a fixed set: label values stay bounded).
PRESS_KINDS = (
    *INSTANCE_ACTIONS, "add", "remove", "knob", "load-start", "load-stop", "experiment", "autoscaler", "lesson",
    "invalid",
)  # fmt: skip
# What the autoscaler's own decisions are logged as (not a press, but marked on the charts the same way).
AUTOSCALE_KIND = "autoscale"
REFUSED_TARGET = "refused"
_SERVICE_NAMES = frozenset(svc.name for svc in catalog.SERVICES)
GRAFANA_PROBE_SECONDS = 10.0
ACTION_WORKERS = 4
REFRESH_TIMINGS_KEPT = 600
KNOBS_REFRESH_SECONDS = 3.0
RESULTS_REFRESH_SECONDS = 3.0
# A page that asked for figures this recently is watching; so is anything pressed this recently.
WATCH_SECONDS = 10.0
# Locust's states while users run.
LOAD_RUNNING = frozenset({"spawning", "running"})


@dataclass(frozen=True)
class Knob:
    """A control on the page and the service knob (from the catalog) it sets."""

    key: str  # the page's id for it
    service: str  # every instance of this service gets the value, unless the knob is per instance
    spec: catalog.Knob

    @property
    def knob(self) -> str:
        """Return the knob's name on the service's control route."""
        return self.spec.name

    @property
    def label(self) -> str:
        """Return the label the page shows, with its unit."""
        unit = f" ({self.spec.unit})" if self.spec.unit and self.spec.unit != "share" else ""
        limits = " (0-1)" if self.spec.unit == "share" else ""
        return f"{self.spec.label}{unit}{limits}"


def knob_key(service: str, knob: str) -> str:
    """Return the page's id for a service's knob (Dash ids may not contain dots)."""
    return f"{service}__{knob}"


def page_knobs() -> dict[str, Knob]:
    """Return the knobs the page shows, from the catalog, in its order."""
    return {
        knob_key(svc.name, spec.name): Knob(knob_key(svc.name, spec.name), svc.name, spec)
        for svc in catalog.lab_services()
        for spec in svc.knobs
        if spec.on_page
    }


KNOBS = page_knobs()


@dataclass(frozen=True)
class ExperimentRun:
    """The experiment the page started last: how far it is and how it ended."""

    name: str = ""
    running: bool = False
    fraction: float = 0.0
    message: str = ""


@dataclass
class LabStatus:
    """What the latest sample saw: tiles, the figures' source, the load engine, Grafana."""

    time: float = 0.0
    tiles: list[Tile] = field(default_factory=list)
    source: str = "none"  # prometheus or services
    source_problem: str = ""  # why Prometheus is not the source, in words for the page
    load: dict[str, Any] = field(default_factory=dict)
    load_problem: str = ""
    grafana: bool = False
    knobs: dict[str, Any] = field(default_factory=dict)  # page key -> current value (first instance's)
    # service -> the longest a dead instance can stay in rotation, from its pools' health-check settings
    detection_bounds: dict[str, float] = field(default_factory=dict)
    sample_seconds: float = 0.0


class Lab:
    """The running stack as the page sees it, refreshed in the background."""

    def __init__(
        self,
        config: DashboardConfig,
        orchestrator: Orchestrator,
        admin_token: Callable[[], str],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        # What the page itself costs, as every instance shows (process_cpu_seconds_total, ...).
        ProcessCollector(registry=self.registry)
        self._admin_token = admin_token
        self.stack = StackClient(orchestrator, admin_token, config.request_timeout)
        self.load = LoadEngine(config.loadgen_url, config.request_timeout)
        self.actions = ActionLog(self.registry)
        # In containers, the engine's own figures of each one (everything in it, against its limits) on this
        # /metrics too; local processes have no container and no limit, and keep to their process figures.
        self.container_stats = ContainerStatsCollector() if orchestrator.limits_instances else None
        if self.container_stats is not None:
            self.registry.register(self.container_stats)
        self.failovers = FailoverTracker(self.stack, self._loadgen)
        self.history = History(config.history_seconds, config.refresh_seconds)
        self.prometheus = PrometheusSource(config.prometheus_url, config.request_timeout)
        self.direct = DirectSource(self.stack, self._loadgen)
        self.status = LabStatus()
        self._instances: list[InstanceInfo] = []
        # Instances a press just changed: name -> (state, process state, when), for the sample under way.
        self._shown: dict[str, tuple[str, str, float]] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(ACTION_WORKERS, thread_name_prefix="action")
        # The running actions' futures, by action id, for a press that waits for its result (settle).
        self._settling: dict[int, concurrent.futures.Future[None]] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._grafana_checked = 0.0
        self._knobs_read = 0.0
        self._watched_at = time.monotonic()  # a page usually opens right after the start
        self.experiment = ExperimentRun()
        self._results_read: tuple[float, list[dict[str, Any]]] = (-RESULTS_REFRESH_SECONDS, [])
        self._experiment_lock = threading.Lock()
        # How long the page's chart callback took, for the figure in the docs and the page's footer.
        self.refresh_timings: deque[float] = deque(maxlen=REFRESH_TIMINGS_KEPT)
        self.autoscaler: Autoscaler | None = None  # made the first time it is switched on
        # Lessons: each step's result by lesson and step, and the step running now (one at a time, as experiments).
        self.lesson_steps: dict[str, dict[str, Any]] = {}
        self.lesson_running: tuple[str, str, float, str] | None = None  # lesson, step, fraction, message
        self._lessons: dict[str, Lesson] = {}
        self._autoscaler_lock = threading.Lock()

    # ---------------------------------------------------------------- sampling
    def start(self) -> None:
        """Start sampling in the background (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling, and following the containers' stats."""
        self._stop.set()
        self._wake.set()
        if self.container_stats is not None:
            self.container_stats.close()

    def refresh_soon(self) -> None:
        """Sample now rather than at the next interval (after an action, so the page shows it)."""
        self._wake.set()

    def watched(self) -> None:
        """A page asked for figures: read the stack at the full rate again (at once, if the sampler was idling)."""
        idling = not self._watching()
        self._watched_at = time.monotonic()
        if idling:
            self.refresh_soon()

    def _watching(self) -> bool:
        return time.monotonic() - self._watched_at < WATCH_SECONDS

    def _busy(self) -> bool:
        """Return whether something happens that the history should hold at full resolution, page or not."""
        load = self.status.load or {}
        latest = self.actions.latest()
        return (
            load.get("state") in LOAD_RUNNING
            or (latest is not None and time.time() - latest.time < WATCH_SECONDS)
            or self.experiment.running
            or self.lesson_running is not None
            or (self.autoscaler is not None and self.autoscaler.enabled)
        )

    def interval(self) -> float:
        """Return the seconds until the next reading: the refresh interval, or the idle one when nothing happens.

        An idle stack that nobody watches is read every DASHBOARD_IDLE_REFRESH_SECONDS: each reading asks
        every pool, Prometheus and the load engine, which kept the page and the load engine the busiest
        processes of an idle lab after Prometheus.
        """
        if self._watching() or self._busy():
            return self.config.refresh_seconds
        return self.config.idle_refresh_seconds

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.sample_once()
            except Exception:  # the sampler must outlive any one bad answer
                log.exception("sampling the stack failed")
            self._wake.wait(max(0.0, self.interval() - (time.monotonic() - began)))
            self._wake.clear()

    def _loadgen(self) -> InstanceInfo | None:
        return next((i for i in self._instances if i.service == "loadgen" and i.state == "running"), None)

    def sample_once(self) -> LabStatus:
        """Read the stack once: tiles, figures, load, knobs; append the figures to the history."""
        began = time.monotonic()
        now = time.time()
        try:
            instances = self.stack.instances()
        except (OrchestratorError, OSError) as exc:
            log.warning("the orchestrator did not answer: %s", exc)
            instances = self._instances
        self._instances = instances
        pools = self.stack.pools(instances)
        status = LabStatus(time=now, tiles=self.stack.tiles(instances, pools))
        for owner, pool in pools.items():
            checks = pool.get("health_check", {})
            balanced = next(
                (svc.name for svc, pool in catalog.pool_holders() if pool.holder == service_of(owner)), None
            )
            if balanced and checks:
                status.detection_bounds[balanced] = detection_bound(checks)
        try:
            values = self.prometheus.read()
            status.source = "prometheus"
            self.direct._previous = None  # a later fallback starts its rates afresh
        except SourceUnavailable as exc:
            status.source_problem = f"{exc}. Showing figures read from the services' own /metrics instead."
            try:
                values = self.direct.read(instances)
                status.source = "services"
            except SourceUnavailable as direct_exc:
                values = {}
                status.source_problem = f"{exc}; and {direct_exc}."
        self.history.add(Sample(now, values))
        try:
            status.load = self.load.stats()
        except LoadEngineError as exc:
            status.load_problem = str(exc)
        status.knobs = self.status.knobs
        latest = self.actions.latest()
        if now - self._knobs_read >= KNOBS_REFRESH_SECONDS or (latest and latest.time >= self._knobs_read - 1):
            # Knobs change by this page's actions or a CLI: read them every few seconds and after each action.
            status.knobs = self._read_knobs(instances)
            self._knobs_read = now
        status.grafana = self._grafana_reachable()
        status.sample_seconds = time.monotonic() - began
        # A press that changed an instance while this sample was being read wins over what the sample saw
        # before it: otherwise its tile (and the map) would show the old state again for a whole interval.
        self._shown = {name: seen for name, seen in self._shown.items() if seen[2] >= now}
        shown = dict(self._shown)
        status.tiles = [
            replace(tile, state=shown[tile.name][0], process=shown[tile.name][1]) if tile.name in shown else tile
            for tile in status.tiles
        ]
        self.status = status
        return status

    def _read_knobs(self, instances: list[InstanceInfo]) -> dict[str, Any]:
        knobs: dict[str, Any] = {}
        first: dict[str, InstanceInfo] = {}
        for info in instances:
            if info.state == "running" and info.service not in first:
                first[info.service] = info
        for service in {knob.service for knob in KNOBS.values()}:
            if service not in first:
                continue
            try:
                values = self.stack.call(first[service], "GET", "/control")["knobs"]
            except (ServiceError, KeyError, TypeError):
                continue
            for knob in KNOBS.values():
                if knob.service == service and knob.knob in values:
                    knobs[knob.key] = values[knob.knob]["value"]
        return knobs

    def _grafana_reachable(self) -> bool:
        if time.monotonic() - self._grafana_checked < GRAFANA_PROBE_SECONDS:
            return self.status.grafana
        self._grafana_checked = time.monotonic()
        try:
            url = self.config.grafana_probe_url.rstrip("/") + "/api/health"
            return requests.get(url, timeout=self.config.request_timeout).status_code == 200
        except requests.RequestException:
            return False

    # ---------------------------------------------------------------- actions
    def _submit(self, kind: str, target: str, work: Callable[[Action], str], detail: str = "") -> Action:
        action = self.actions.begin(kind, target, detail)

        def run() -> None:
            try:
                message = work(action)
            except (OrchestratorError, ServiceError, LoadEngineError, ValueError) as exc:
                self.actions.finish(action, False, str(exc))
            except Exception as exc:  # shown on the page rather than lost in a thread
                log.exception("%s failed", action.label)
                self.actions.finish(action, False, f"{type(exc).__name__}: {exc}")
            else:
                self.actions.finish(action, True, message)
            self.refresh_soon()

        future = self._executor.submit(run)
        self._settling[action.id] = future
        future.add_done_callback(lambda _done: self._settling.pop(action.id, None))
        self.refresh_soon()
        return action

    def settle(self, action: Action, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for ``action`` to finish; return whether it did.

        A press's own answer can then refresh what it changed (its tile says ``down`` at once), rather
        than the page waiting for its next interval to show it.
        """
        future = self._settling.get(action.id)
        if future is None:
            return True  # finished already: a running action's future stays until it is done
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            return False
        return True

    def refuse(self, kind: str, message: str, target: str = REFUSED_TARGET) -> Action:
        """Log a press the page will not carry out (a value no control of the page could send) and return it.

        Its target is a fixed word unless the caller vouches for it: values from the browser
        never become metric labels.
        """
        action = self.actions.begin(kind if kind in PRESS_KINDS else "invalid", target)
        return self.actions.finish(action, False, message)

    def _instance_names(self) -> set[str]:
        return {tile.name for tile in self.status.tiles} | {info.name for info in self._instances}

    def instance_action(self, kind: str, name: Any) -> Action:
        """Kill, pause, resume or start an instance in the background; return the logged action.

        Only the stack's own instances, and only those the page offers buttons for.
        """
        if kind not in INSTANCE_ACTIONS:
            return self.refuse("invalid", f"unknown action; the page offers {', '.join(INSTANCE_ACTIONS)}")
        if not isinstance(name, str) or name not in self._instance_names():
            return self.refuse(kind, "no such instance in this stack")
        service = service_of(name)
        if service in _SERVICE_NAMES and not catalog.service(service).controllable:
            return self.refuse(kind, f"{name} has no {kind} button", target=name)
        orchestrator = self.stack.orchestrator
        action = actions.parse(kind, name)

        def work(_action: Action) -> str:
            # The clock is read right before the signal: detection is timed from the event itself.
            started = time.time()
            tracked = self.failovers.tracks(name)
            if tracked and kind in ("start", "resume"):
                self.failovers.on_up(name, kind, started)
            done = actions.perform(action, orchestrator)
            if tracked and kind in ("kill", "pause"):
                self.failovers.on_down(name, kind, started)
            info = done.instances[0]
            self._show_now(name, info.state)
            return done.message

        return self._submit(kind, name, work)

    def _show_now(self, name: str, process: str) -> None:
        """Put an instance's new process state on its tile at once, ahead of the next full sample."""
        state = {"stopped": "down", "paused": "paused"}.get(process)
        tiles = self.status.tiles
        if state is not None:
            self._shown[name] = (state, process, time.time())
        else:
            self._shown.pop(name, None)  # started or resumed: what the sample sees is right
        if state is not None and any(tile.name == name for tile in tiles):
            self.status = replace(
                self.status,
                tiles=[replace(t, state=state, process=process) if t.name == name else t for t in tiles],
            )

    def scale(self, service: str, direction: str) -> Action:
        """Add (``out``) or remove (``in``) one instance of a gateway or microservice, in the background."""
        scalable = catalog.scalable()
        if service not in scalable or direction not in ("out", "in"):
            return self.refuse("add" if direction == "out" else "remove", f"only {', '.join(scalable)} scale")
        orchestrator = self.stack.orchestrator

        def work(_action: Action) -> str:
            if direction == "out":
                return actions.perform(actions.Add(service), orchestrator).message
            names = newest_first([i.name for i in orchestrator.instances() if i.service == service])
            if len(names) < 2:
                raise OrchestratorError(f"only {len(names)} {service} instance(s) left: scaling in would leave none")
            return actions.perform(actions.Remove(names[0]), orchestrator).message

        return self._submit("add" if direction == "out" else "remove", service, work)

    def set_knob(self, key: str, value: Any, instance: str | None = None) -> Action:
        """Set a knob on every instance of its service (or on ``instance`` only), in the background.

        The value is checked against the catalog's kind and limits first: the browser may send anything.
        """
        knob = KNOBS.get(key) if isinstance(key, str) else None
        if knob is None:
            return self.refuse("knob", "no such knob on this page")
        if instance is not None and (
            not isinstance(instance, str)
            or instance not in self._instance_names()
            or service_of(instance) != knob.service
        ):
            return self.refuse("knob", f"{knob.label} is set on a {knob.service} of this stack", target=knob.service)
        try:
            value = knob.spec.coerce(value)
        except ValueError as exc:
            return self.refuse("knob", str(exc), target=knob.service)

        def work(_action: Action) -> str:
            change = actions.SetKnobs(instance or knob.service, {knob.knob: value})
            return actions.perform(change, self.stack.orchestrator, self.stack).message

        return self._submit("knob", instance or knob.service, work, detail=f"{knob.knob}={value}")

    def start_load(self, plan: LoadPlan) -> Action:
        """Start the load engine with ``plan`` in the background (refused at once when the plan cannot run)."""
        try:
            plan.validate()
        except ValueError as exc:
            return self.refuse("load-start", str(exc), target="loadgen")

        def work(_action: Action) -> str:
            self.load.start(plan)  # validates first: a bad plan shows as a failed action
            return detail

        detail = f"{plan.users} users" + (f" {plan.rate:g}/s" if plan.rate else "")
        if plan.shape != "constant":
            detail += f" {plan.shape} to {plan.peak_rate:g}/s"
        if plan.model == "open":
            detail += " open"
        return self._submit("load-start", "loadgen", work, detail=detail)

    # ---------------------------------------------------------------- the autoscaler
    def admin_token(self) -> str:
        """Return the stack's admin token (what a change through the page's API must carry)."""
        return self._admin_token()

    def _running(self, service: str) -> list[str]:
        return [i.name for i in self.stack.orchestrator.instances() if i.service == service and i.state == "running"]

    def _autoscale(self, service: str, change: int) -> tuple[str, ...]:
        orchestrator = self.stack.orchestrator
        if change > 0:
            return tuple(actions.perform(actions.Add(service), orchestrator).names[0] for _ in range(change))
        removed = []
        for name in newest_first(self._running(service))[:-change]:
            actions.perform(actions.Remove(name), orchestrator)
            removed.append(name)
        return tuple(removed)

    def _decided(self, decision: Decision) -> None:
        # Logged as an action: it is marked on every chart and listed under the presses.
        action = self.actions.begin(AUTOSCALE_KIND, decision.service, f"{decision.before}→{decision.after}")
        message = decision.reason + (f"; {decision.error}" if decision.error else "")
        self.actions.finish(action, not decision.error, message)
        self.refresh_soon()

    def autoscaler_status(self) -> dict[str, Any]:
        """Return the autoscaler's state: on or off, its policy, the signal it last read, its latest decisions."""
        scaler = self.autoscaler
        if scaler is None:
            return {"enabled": False, "policy": None, "decisions": []}
        return scaler.status()

    def set_autoscaler(self, enabled: Any, policy: dict[str, Any] | None = None) -> dict[str, Any]:
        """Switch the autoscaler on (with ``policy``'s fields, the defaults for the others) or off; return its status.

        Raise AutoscalerError when the policy cannot work; each switch is logged as an action.
        """
        if not isinstance(enabled, bool):
            raise AutoscalerError(f"enabled is true or false, not {enabled!r}")
        if policy is not None and not isinstance(policy, dict):
            raise AutoscalerError(f"the autoscaler's settings are a JSON object, not {policy!r}")
        with self._autoscaler_lock:
            current = self.autoscaler
            # The settings given on top of the ones it had (the defaults the first time).
            chosen = ScalingPolicy.from_fields(policy or {}, current.policy if current is not None else None)
            if current is not None:
                current.stop()
            if enabled:
                scaler = Autoscaler(
                    chosen,
                    PrometheusSignal(self.config.prometheus_url, self.config.request_timeout).read,
                    self._running,
                    self._autoscale,
                    self._decided,
                )
                scaler.start()
                self.autoscaler = scaler
                detail = scaler.policy.describe()
            elif current is not None:
                detail = "off"
            else:
                return self.autoscaler_status()
        service = self.autoscaler.policy.service if self.autoscaler is not None else "autoscaler"
        action = self.actions.begin("autoscaler", service, "on" if enabled else "off")
        self.actions.finish(action, True, detail)
        self.refresh_soon()
        return self.autoscaler_status()

    # ---------------------------------------------------------------- experiments
    def experiments(self) -> list[tuple[str, str]]:
        """Return (name, description) of every built-in experiment."""
        from scalelab.experiments import list_experiments

        return list_experiments()

    def experiment_results(self) -> list[dict[str, Any]]:
        """Return the summaries of the reports in the results directory, newest first (read every few seconds)."""
        from scalelab.experiments import list_results

        now = time.monotonic()
        if self.experiment.running or now - self._results_read[0] >= RESULTS_REFRESH_SECONDS:
            self._results_read = (now, list_results(self.config.results_dir))
        return self._results_read[1]

    def run_experiment(self, name: str) -> Action:
        """Run a built-in experiment against this stack in the background (one at a time)."""
        from scalelab.experiments import Target, builtin_names, load_experiment, run_experiment

        if not isinstance(name, str) or name not in builtin_names():  # the listed ones only, never a path
            return self.refuse("experiment", "the page runs the built-in experiments it lists, nothing else")
        with self._experiment_lock:
            if self.experiment.running or self.lesson_running is not None:
                busy = self.experiment.name if self.experiment.running else f"lesson {self.lesson_running[0]}"  # type: ignore[index]
                return self.refuse("experiment", f"{busy} is still running; wait for it to finish", name)
            self.experiment = ExperimentRun(name=name, running=True, message="starting")

        def progress(fraction: float, message: str) -> None:
            self.experiment = replace(self.experiment, fraction=fraction, message=message)

        def work(_action: Action) -> str:
            try:
                experiment = load_experiment(name)
                target = Target.of(self.stack.orchestrator, self._admin_token)
                result = run_experiment(
                    experiment, target, self.config.results_dir, on_progress=progress, progress_bar=False
                )
            except BaseException as exc:
                self.experiment = replace(self.experiment, running=False, message=f"could not run: {exc}")
                raise
            verdict = "passed" if result.passed else "FAILED: " + ", ".join(c.label for c in result.failed)
            self.experiment = replace(self.experiment, running=False, fraction=1.0, message=verdict)
            return f"{verdict}; report in {result.directory}"

        return self._submit("experiment", name, work)

    # ---------------------------------------------------------------- lessons
    def lessons(self) -> list[tuple[str, str]]:
        """Return (name, title) of every built-in lesson (read once: they ship with the package)."""
        from scalelab.lessons import builtin_lessons, load

        if not self._lessons:
            self._lessons = {name: load(name) for name in builtin_lessons()}
        return [(name, lesson.title) for name, lesson in self._lessons.items()]

    def lesson(self, name: Any) -> Lesson | None:
        """Return the built-in lesson ``name``, or None when there is none (names come from the browser)."""
        self.lessons()
        return self._lessons.get(name) if isinstance(name, str) else None

    def run_lesson_step(self, name: Any, step_id: Any) -> Action:
        """Run one step of a built-in lesson against this stack in the background (one run at a time)."""
        from scalelab.experiments import Target
        from scalelab.lessons import LessonError, run_step

        lesson = self.lesson(name)
        if lesson is None:  # the listed ones only, never a path
            return self.refuse("lesson", "the page runs the built-in lessons it lists, nothing else")
        step = next((s for s in lesson.steps if s.id == step_id), None)
        if step is None:
            return self.refuse("lesson", f"{name} has no such step", target=name)
        with self._experiment_lock:
            if self.experiment.running or self.lesson_running is not None:
                running = self.experiment.name if self.experiment.running else self.lesson_running[0]  # type: ignore[index]
                return self.refuse("lesson", f"{running} is still running; wait for it to finish", target=name)
            self.lesson_running = (name, step.id, 0.0, "starting")

        def progress(fraction: float, message: str) -> None:
            self.lesson_running = (name, step.id, fraction, message)

        def work(_action: Action) -> str:
            try:
                target = Target.of(self.stack.orchestrator, self._admin_token)
                result = run_step(lesson, step, target, self.config.results_dir, on_progress=progress)
            except LessonError as exc:
                raise ValueError(str(exc)) from None
            finally:
                self.lesson_running = None
            self.lesson_steps.setdefault(name, {})[step.id] = result
            return f"{step.title}: {'every check passed' if result.passed else 'some checks failed'}"

        return self._submit("lesson", name, work, detail=step.id)

    def stop_load(self) -> Action:
        """Stop the load engine in the background."""

        def work(_action: Action) -> str:
            self.load.stop()
            return "stopped"

        return self._submit("load-stop", "loadgen", work)
