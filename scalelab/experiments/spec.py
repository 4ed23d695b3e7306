"""Experiment files: YAML read into typed, validated dataclasses.

An experiment names its load (``load``), what to change before it (``setup``, and per
``variants``), what to do while it runs (``timeline``) and what it must show (``checks``).
Every error names the file and the field, e.g. ``failover.yaml: load.users: ...``, or the line
when the YAML itself is wrong; a key written twice in one mapping is an error, not a silent override.
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from scalelab import catalog
from scalelab.autoscaler import AutoscalerError, ScalingPolicy
from scalelab.experiments.checks import METRICS, SHARE_PREFIX
from scalelab.experiments.usl import MIN_POINTS
from scalelab.load import mix as load_mix
from scalelab.load import shapes

__all__ = [
    "BUILTIN_DIR",
    "ENDPOINTS",
    "VERBS",
    "Action",
    "Check",
    "Experiment",
    "LoadProfile",
    "SpecError",
    "Variant",
    "builtin_names",
    "load",
    "parse",
    "read_yaml",
]

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"
# What a planned request can be; the weights in ``load.mix`` are keyed by these.
ENDPOINTS = load_mix.ENDPOINTS
# Instance actions go through the orchestrator; ``set`` goes to the instances' PUT /control.
VERBS = ("kill", "start", "pause", "resume", "add", "remove", "set")
# Measured values a scaling law can be fitted to: throughputs.
FITTED_METRICS = ("throughput_rps",)
# Bounds that keep a mistyped file from becoming a denial of service on the lab machine.
MAX_USERS = 200
MAX_REQUESTS = 100_000
MAX_DURATION_SECONDS = 600.0
MAX_RATE = 5_000.0
LOAD_MODELS = shapes.MODELS
LOAD_SHAPES = shapes.SHAPES
MAX_REQUEST_TIMEOUT = 60.0
# The longest an experiment's autoscaler keeps running after the load to scale back in.
MAX_AUTOSCALE_AFTER_SECONDS = 120.0
DEFAULT_VARIANT = "default"
# A mapping's ``<<: *anchor`` key; the keys it merges in may repeat the mapping's own.
MERGE_TAG = "tag:yaml.org,2002:merge"


class SpecError(ValueError):
    """An experiment file is missing, unreadable or invalid; the message names the file and the field."""


@dataclass(frozen=True)
class LoadProfile:
    """The load: exactly ``requests`` at ``users`` concurrency, or ``users`` (at ``rate``) for ``duration`` s."""

    users: int = 10
    requests: int | None = None
    duration: float | None = None
    rate: float = 0.0  # requests per second for all users together; 0 = as fast as answers come
    # closed: each user waits for an answer before it sends again, and latency counts from the send;
    # open: every request goes out when it is due, answered or not, and latency counts from then.
    model: str = "closed"
    # How the rate moves over a duration-limited load: constant; ramp (from rate to peak_rate); steps
    # (rate, then evenly up to peak_rate in `steps` steps); spike (peak_rate through the middle fifth).
    shape: str = "constant"
    peak_rate: float = 0.0
    steps: int = 4

    def rate_at(self, elapsed: float) -> float:
        """Return the requests per second due ``elapsed`` seconds into the load, as the shape says."""
        return shapes.rate_at(self.shape, self.rate, self.peak_rate, self.steps, self.duration, elapsed)

    seed: int = 1
    mix: dict[str, float] = field(default_factory=lambda: dict(load_mix.DEFAULT_MIX))
    hot_keys: int = load_mix.DEFAULT_HOT_KEYS
    repeat: int = 1  # each drawn request is sent this many times in a row (a miss, then hits)
    longtask_seconds: float = load_mix.DEFAULT_LONGTASK_SECONDS
    timeout: float = 10.0  # seconds one request may take before it counts as lost
    max_seconds: float = 120.0  # a count-mode run stops handing out requests after this long

    def expected_seconds(self) -> float:
        """Return about how long the load runs (the cap for a count-mode run without a rate)."""
        if self.duration is not None:
            return self.duration
        if self.rate > 0 and self.requests is not None:
            return min(self.requests / self.rate, self.max_seconds)
        return self.max_seconds


@dataclass(frozen=True)
class Action:
    """One change to the stack: a verb, its target (instance, service, or service to add) and knobs for ``set``."""

    verb: str
    target: str
    knobs: dict[str, Any] = field(default_factory=dict)
    at: float | None = None  # seconds from load start (timeline actions only)

    def describe(self) -> str:
        """Return the action as a short label, e.g. ``kill gateway-2`` or ``set gateway coalescing=False``."""
        if self.verb == "set":
            return f"set {self.target} " + " ".join(f"{k}={v}" for k, v in self.knobs.items())
        return f"{self.verb} {self.target}"


@dataclass(frozen=True)
class Variant:
    """One run of the load under its own setup (e.g. coalescing off, then on), and its own timeline if it has one."""

    name: str
    setup: tuple[Action, ...] = ()
    timeline: tuple[Action, ...] = ()  # replaces the experiment's timeline for this variant
    expect: str = ""  # the outcome expected, in words, written beside the measured one in the report
    instances: int | None = None  # instances of the scaled service it runs, for a scaling-law fit
    model: str | None = None  # the load model of this variant (the experiment's load.model otherwise)
    autoscale: bool = True  # with the experiment's autoscaler running (when it has one)


@dataclass(frozen=True)
class Check:
    """A threshold on a measured value; ``speedup`` compares ``of`` between ``baseline`` and ``variant``."""

    metric: str
    min: float | None = None
    max: float | None = None
    variant: str | None = None  # None: every variant must pass
    of: str | None = None
    baseline: str | None = None

    def describe(self) -> str:
        """Return the check as a label, e.g. ``p99_ms <= 500`` or ``speedup of database_reads >= 3``."""
        name = f"speedup of {self.of} ({self.baseline} -> {self.variant})" if self.metric == "speedup" else self.metric
        if self.metric != "speedup" and self.variant:
            name += f" [{self.variant}]"
        bounds = []
        if self.min is not None:
            bounds.append(f">= {self.min:g}")
        if self.max is not None:
            bounds.append(f"<= {self.max:g}")
        return f"{name} {' and '.join(bounds)}"


@dataclass(frozen=True)
class Experiment:
    """A whole experiment file, validated."""

    name: str
    description: str
    load: LoadProfile
    variants: tuple[Variant, ...]
    setup: tuple[Action, ...] = ()
    timeline: tuple[Action, ...] = ()
    checks: tuple[Check, ...] = ()
    notes: str = ""
    source: str = ""  # the file it came from
    raw: dict[str, Any] = field(default_factory=dict)  # the document after overrides, for the report
    scaling_law: str | None = None  # a metric to fit the Universal Scalability Law to, over the variants' instances
    autoscaler: ScalingPolicy | None = (
        None  # runs during each variant's load (unless the variant says autoscale: false)
    )
    autoscale_after: float = 0.0  # seconds it keeps running after the load, so it can scale back in


# ---------------------------------------------------------------------------- loading


def builtin_names() -> list[str]:
    """Return the names of the built-in experiments."""
    return sorted(path.stem for path in BUILTIN_DIR.glob("*.yaml"))


def resolve(name_or_path: str | Path) -> Path:
    """Return the file of a built-in experiment name or of a path; raise SpecError naming the built-ins."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise SpecError(f"{path}: no such experiment file")
        return path
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if builtin.is_file():
        return builtin
    raise SpecError(f"no experiment named {str(name_or_path)!r}; built-in: {', '.join(builtin_names())} (or a path)")


def load(name_or_path: str | Path, overrides: dict[str, Any] | None = None) -> Experiment:
    """Read a built-in experiment (by name) or a YAML file, apply ``overrides`` and validate it.

    ``overrides`` maps dotted paths to values, e.g. ``{"load.duration": 5, "checks.0.max": 0.5}``;
    string values are read as YAML scalars, as ``--set key=value`` gives them.
    """
    path = resolve(name_or_path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read it: {exc}") from None
    return parse(read_yaml(text, path.name), path.name, overrides, source=str(path))


def read_yaml(text: str, filename: str) -> Any:
    """Parse YAML text as ``yaml.safe_load`` does, but raise SpecError on a duplicate key or a syntax error.

    The message names ``filename`` and, for a duplicate, the key's field path and both lines, e.g.
    ``scaling.yaml: load: duplicate key (lines 12 and 15)``; for a syntax error the line and the problem.
    """
    try:
        return yaml.load(text, Loader=_StrictLoader)  # as safe as yaml.safe_load: a SafeLoader subclass
    except _DuplicateKey as exc:
        first, second = exc.lines
        lines = f"both on line {first}" if first == second else f"lines {first} and {second}"
        raise SpecError(f"{filename}: {exc.where}: duplicate key ({lines})") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{filename}: {_yaml_problem(exc, text)}") from None


class _DuplicateKey(yaml.constructor.ConstructorError):
    """A mapping names a key twice; ``where`` is the key's field path, ``lines`` the two lines (from 1)."""

    def __init__(self, where: str, first: yaml.error.Mark, second: yaml.error.Mark) -> None:
        super().__init__("while constructing a mapping", first, f"found duplicate key {where}", second)
        self.where = where
        self.lines = (first.line + 1, second.line + 1)


class _StrictLoader(yaml.SafeLoader):
    """Load YAML as SafeLoader does, but raise _DuplicateKey when a mapping names a key twice.

    PyYAML keeps the last of two equal keys without a word, so a stray line that reads as
    ``load: ...`` would quietly replace the real section, or be replaced by it.
    """

    def construct_document(self, node: yaml.nodes.Node) -> Any:
        # Taken before anything is built: a merge key (<<) adds the merged keys to a mapping's node
        # as it is built, and those may repeat its own keys legitimately.
        self._mappings = _mappings(node)
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.nodes.Node, deep: bool = False) -> dict[Any, Any]:
        if isinstance(node, yaml.nodes.MappingNode):
            where, pairs = self._mappings.get(id(node), ("", list(node.value)))
            first: dict[Any, yaml.nodes.Node] = {}
            for key_node, _ in pairs:
                if key_node.tag == MERGE_TAG:
                    continue
                key = self.construct_object(key_node)
                try:
                    seen = first.setdefault(key, key_node)
                except TypeError:
                    continue  # an unhashable key: SafeLoader refuses it with its own message
                if seen is not key_node:
                    # Named as written (``yes``, not True), as the path to the mapping is.
                    written = key_node.value if isinstance(key_node, yaml.nodes.ScalarNode) else key
                    raise _DuplicateKey(_field(where, written), seen.start_mark, key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _mappings(root: yaml.nodes.Node) -> dict[int, tuple[str, list[tuple[yaml.nodes.Node, yaml.nodes.Node]]]]:
    """Return each mapping node's field path and its own key/value nodes, by the node's id."""
    found: dict[int, tuple[str, list[tuple[yaml.nodes.Node, yaml.nodes.Node]]]] = {}
    visited: set[int] = set()
    pending = [(root, "")]
    while pending:
        node, where = pending.pop()
        if id(node) in visited:
            continue  # an alias: the node keeps the path of its anchor, which comes first in the file
        visited.add(id(node))
        children: list[tuple[yaml.nodes.Node, str]] = []
        if isinstance(node, yaml.nodes.MappingNode):
            found[id(node)] = (where, list(node.value))
            for key_node, value_node in node.value:
                key = key_node.value if isinstance(key_node, yaml.nodes.ScalarNode) else "?"
                children.append((value_node, _field(where, key)))
        elif isinstance(node, yaml.nodes.SequenceNode):
            children = [(item, f"{where}[{index}]") for index, item in enumerate(node.value)]
        pending.extend(reversed(children))  # reversed onto the stack: visited in the file's order
    return found


def _field(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """Return a YAML error as ``line N: not valid YAML: problem (context)``, without PyYAML's excerpts."""
    if isinstance(exc, yaml.reader.ReaderError):
        # A character YAML does not allow: PyYAML gives its position in the text, not its line.
        line = text.count("\n", 0, exc.position) + 1
        return f"line {line}: not valid YAML: {str(exc).splitlines()[0]}"
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"not valid YAML: {str(exc).splitlines()[0]}"
    message = f"line {exc.problem_mark.line + 1}: not valid YAML: {exc.problem}"
    if exc.context:
        message += f" ({exc.context}"
        if exc.context_mark is not None and exc.context_mark.line != exc.problem_mark.line:
            message += f" from line {exc.context_mark.line + 1}"
        message += ")"
    return message


def parse(document: Any, filename: str, overrides: dict[str, Any] | None = None, source: str = "") -> Experiment:
    """Validate an experiment document (already parsed YAML) and return it; ``filename`` names it in errors."""
    if not isinstance(document, dict):
        raise SpecError(f"{filename}: the file must be a mapping with name, load, checks, ...")
    document = copy.deepcopy(document)
    for dotted, value in (overrides or {}).items():
        _override(document, dotted, value, filename)
    return _Reader(filename).experiment(document, source)


def _override(document: dict[str, Any], dotted: str, value: Any, filename: str) -> None:
    if isinstance(value, str):
        # Text that is not a YAML scalar stays the string it was.
        with contextlib.suppress(yaml.YAMLError):
            value = yaml.load(value, Loader=_StrictLoader) if value.strip() else value
    parts = dotted.split(".")
    if not dotted or any(not part for part in parts):
        raise SpecError(f"{filename}: --set {dotted!r}: give a dotted field like load.duration")
    node: Any = document
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise SpecError(f"{filename}: --set {dotted}: {where} is not an index of a list of {len(node)}")
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise SpecError(f"{filename}: --set {dotted}: {'.'.join(parts[:depth])} is a value, not a mapping")


class _Reader:
    """Turn a document into dataclasses, naming the file and field in every error."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def fail(self, where: str, message: str) -> SpecError:
        return SpecError(f"{self.filename}: {where}: {message}")

    def mapping(self, value: Any, where: str, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(where, f"must be a mapping, not {_show(value)}")
        unknown = [key for key in value if key not in known]
        if unknown:
            raise self.fail(
                f"{where}.{unknown[0]}" if where else str(unknown[0]), f"unknown field; known: {', '.join(known)}"
            )
        return value

    def number(self, value: Any, where: str, low: float, high: float, integer: bool = False) -> Any:
        kind = "a whole number" if integer else "a number"
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(where, f"must be {kind}, not {_show(value)}")
        if integer and value != int(value):
            raise self.fail(where, f"must be {kind}, not {_show(value)}")
        if not low <= value <= high:
            raise self.fail(where, f"must be from {low:g} to {high:g}, not {value:g}")
        return int(value) if integer else float(value)

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"must be a non-empty text, not {_show(value)}")
        return value.strip()

    # ------------------------------------------------------------------------ sections
    def experiment(self, document: dict[str, Any], source: str) -> Experiment:
        known = (
            "name", "description", "notes", "load", "setup", "variants", "timeline", "checks", "scaling_law",
            "autoscaler",
        )  # fmt: skip
        self.mapping(document, "", known)
        if "load" not in document:
            raise self.fail("load", "missing: say how much load to send (requests or duration, users)")
        name = self.text(document.get("name", Path(self.filename).stem), "name")
        load = self.load(document["load"])
        setup = self.actions(document.get("setup", []), "setup", timed=False)
        variants = self.variants(document.get("variants", []), load.duration, load.rate)
        timeline = self.actions(document.get("timeline", []), "timeline", timed=True, until=load.duration)
        checks = self.checks(document.get("checks", []), [variant.name for variant in variants])
        scaling_law = self.scaling_law(document.get("scaling_law"), variants)
        autoscaler, autoscale_after = self.autoscaler(document.get("autoscaler"))
        notes = document.get("notes", "") or ""
        if not isinstance(notes, str):
            raise self.fail("notes", f"must be text, not {_show(notes)}")
        description = document.get("description", "") or ""
        if not isinstance(description, str):
            raise self.fail("description", f"must be text, not {_show(description)}")
        return Experiment(
            name=name,
            description=description.strip(),
            load=load,
            variants=variants,
            setup=setup,
            timeline=timeline,
            checks=checks,
            notes=notes.strip(),
            source=source,
            raw=document,
            scaling_law=scaling_law,
            autoscaler=autoscaler,
            autoscale_after=autoscale_after,
        )

    def autoscaler(self, value: Any) -> tuple[ScalingPolicy | None, float]:
        if value is None:
            return None, 0.0
        numbers = {
            "target": (1e-6, 1e6, False),
            "min_instances": (1, 64, True),
            "max_instances": (1, 64, True),
            "cooldown_seconds": (0.1, 600, False),
            "hysteresis": (0, 0.99, False),
            "interval_seconds": (0.1, 60, False),
            "watch_after": (0, MAX_AUTOSCALE_AFTER_SECONDS, False),
        }
        raw = self.mapping(value, "autoscaler", ("service", "signal", *numbers))
        fields: dict[str, Any] = {
            name: self.number(raw[name], f"autoscaler.{name}", low, high, integer)
            for name, (low, high, integer) in numbers.items()
            if name in raw
        }
        after = fields.pop("watch_after", 0.0)
        for name in ("service", "signal"):
            if name in raw:
                fields[name] = self.text(raw[name], f"autoscaler.{name}")
        try:
            return ScalingPolicy(**fields).resolved(), after
        except AutoscalerError as exc:
            raise self.fail("autoscaler", str(exc)) from None

    def scaling_law(self, value: Any, variants: tuple[Variant, ...]) -> str | None:
        if value is None:
            return None
        if value not in FITTED_METRICS:
            raise self.fail("scaling_law", f"fits one of {', '.join(FITTED_METRICS)}, not {_show(value)}")
        missing = [variant.name for variant in variants if variant.instances is None]
        if missing:
            raise self.fail("scaling_law", f"every variant needs its instances (e.g. instances: 2); not {missing}")
        counts = {variant.instances for variant in variants}
        if len(counts) < MIN_POINTS or 1 not in counts:
            raise self.fail(
                "scaling_law",
                f"needs variants at {MIN_POINTS} or more instance counts, one of them 1; not {sorted(counts)}",
            )
        return value

    def load(self, value: Any) -> LoadProfile:
        known = (
            "users",
            "requests",
            "duration",
            "rate",
            "seed",
            "mix",
            "hot_keys",
            "repeat",
            "longtask_seconds",
            "timeout",
            "max_seconds",
            "model",
            "shape",
            "peak_rate",
            "steps",
        )
        raw = self.mapping(value, "load", known)
        defaults = LoadProfile()
        users = self.number(raw.get("users", defaults.users), "load.users", 1, MAX_USERS, integer=True)
        requests = raw.get("requests")
        duration = raw.get("duration")
        if (requests is None) == (duration is None):
            raise self.fail("load", "give either requests (exactly that many) or duration (seconds), not both")
        if requests is not None:
            requests = self.number(requests, "load.requests", 1, MAX_REQUESTS, integer=True)
        if duration is not None:
            duration = self.number(duration, "load.duration", 0.1, MAX_DURATION_SECONDS)
        mix_raw = self.mapping(raw.get("mix", defaults.mix), "load.mix", ENDPOINTS)
        mix = {name: self.number(weight, f"load.mix.{name}", 0, 1e6) for name, weight in mix_raw.items()}
        if sum(mix.values()) <= 0:
            raise self.fail("load.mix", f"needs at least one positive weight among {', '.join(ENDPOINTS)}")
        rate = self.number(raw.get("rate", defaults.rate), "load.rate", 0, MAX_RATE)
        shape = raw.get("shape", defaults.shape)
        if shape not in LOAD_SHAPES:
            raise self.fail("load.shape", f"is one of {', '.join(LOAD_SHAPES)}, not {_show(shape)}")
        peak_rate = self.number(raw.get("peak_rate", defaults.peak_rate), "load.peak_rate", 0, MAX_RATE)
        if shape != "constant" and (duration is None or rate <= 0 or peak_rate <= 0):
            raise self.fail("load.shape", f"{shape} needs duration, rate and peak_rate (the rate it reaches)")
        return LoadProfile(
            shape=shape,
            peak_rate=peak_rate,
            steps=self.number(raw.get("steps", defaults.steps), "load.steps", 2, 100, integer=True),
            users=users,
            requests=requests,
            duration=duration,
            rate=rate,
            model=self.model(raw.get("model", defaults.model), "load.model", rate),
            seed=self.number(raw.get("seed", defaults.seed), "load.seed", 0, 2**63, integer=True),
            mix=mix,
            hot_keys=self.number(raw.get("hot_keys", defaults.hot_keys), "load.hot_keys", 1, 1_000_000, integer=True),
            repeat=self.number(raw.get("repeat", defaults.repeat), "load.repeat", 1, MAX_REQUESTS, integer=True),
            longtask_seconds=self.number(
                raw.get("longtask_seconds", defaults.longtask_seconds), "load.longtask_seconds", 0, 60
            ),
            timeout=self.number(raw.get("timeout", defaults.timeout), "load.timeout", 0.1, MAX_REQUEST_TIMEOUT),
            max_seconds=self.number(
                raw.get("max_seconds", defaults.max_seconds), "load.max_seconds", 1, MAX_DURATION_SECONDS
            ),
        )

    def model(self, value: Any, where: str, rate: float) -> str:
        if value not in LOAD_MODELS:
            raise self.fail(where, f"is one of {', '.join(LOAD_MODELS)}, not {_show(value)}")
        if value == "open" and rate <= 0:
            raise self.fail(where, "open needs load.rate: requests go out at that rate whether answered or not")
        return str(value)

    def actions(self, value: Any, where: str, timed: bool, until: float | None = None) -> tuple[Action, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(where, f"must be a list of actions, not {_show(value)}")
        # Each item is read, and named in errors, by its place in the file; sorting comes after.
        actions = [self.action(item, f"{where}[{index}]", timed, until) for index, item in enumerate(value)]
        if timed:
            actions.sort(key=lambda action: action.at or 0.0)
        return tuple(actions)

    def action(self, value: Any, where: str, timed: bool, until: float | None = None) -> Action:
        known = (*VERBS, "knobs", "at") if timed else (*VERBS, "knobs")
        raw = self.mapping(value, where, known)
        verbs = [verb for verb in VERBS if verb in raw]
        if len(verbs) != 1:
            raise self.fail(where, f"name exactly one of {', '.join(VERBS)} (e.g. kill: gateway-2)")
        verb = verbs[0]
        target = self.text(raw[verb], f"{where}.{verb}")
        if verb == "add" and target not in catalog.scalable():
            raise self.fail(f"{where}.add", f"only {' or '.join(catalog.scalable())} can be added, not {target!r}")
        knobs: dict[str, Any] = {}
        if verb == "set":
            knobs = raw.get("knobs")  # type: ignore[assignment]
            if not isinstance(knobs, dict) or not knobs:
                raise self.fail(f"{where}.knobs", "set needs knobs, e.g. knobs: {coalescing: false}")
            knobs = {str(name): knob for name, knob in knobs.items()}
        elif "knobs" in raw:
            raise self.fail(f"{where}.knobs", f"only set takes knobs, not {verb}")
        at = None
        if timed:
            if "at" not in raw:
                raise self.fail(f"{where}.at", "missing: seconds from the start of the load")
            at = self.number(raw["at"], f"{where}.at", 0, MAX_DURATION_SECONDS)
            if until is not None and at >= until:
                raise self.fail(f"{where}.at", f"{at:g} s is not before the end of the load ({until:g} s)")
        return Action(verb, target, knobs, at)

    def variants(self, value: Any, until: float | None = None, rate: float = 0.0) -> tuple[Variant, ...]:
        if value is None or value == []:
            return (Variant(DEFAULT_VARIANT),)
        if not isinstance(value, list):
            raise self.fail("variants", f"must be a list, not {_show(value)}")
        variants = []
        for index, item in enumerate(value):
            where = f"variants[{index}]"
            raw = self.mapping(item, where, ("name", "setup", "timeline", "expect", "instances", "model", "autoscale"))
            autoscale = raw.get("autoscale", True)
            if not isinstance(autoscale, bool):
                raise self.fail(f"{where}.autoscale", f"is true or false, not {_show(autoscale)}")
            name = self.text(raw.get("name"), f"{where}.name")
            if name in [variant.name for variant in variants]:
                raise self.fail(f"{where}.name", f"{name!r} is used twice")
            expect = raw.get("expect", "") or ""
            if not isinstance(expect, str):
                raise self.fail(f"{where}.expect", f"must be text, not {_show(expect)}")
            variants.append(
                Variant(
                    name,
                    self.actions(raw.get("setup", []), f"{where}.setup", False),
                    self.actions(raw.get("timeline", []), f"{where}.timeline", timed=True, until=until),
                    " ".join(expect.split()),
                    self.number(raw["instances"], f"{where}.instances", 1, 64, True) if "instances" in raw else None,
                    self.model(raw["model"], f"{where}.model", rate) if "model" in raw else None,
                    autoscale,
                )
            )
        return tuple(variants)

    def checks(self, value: Any, variants: list[str]) -> tuple[Check, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail("checks", f"must be a list, not {_show(value)}")
        checks = []
        for index, item in enumerate(value):
            where = f"checks[{index}]"
            raw = self.mapping(item, where, ("metric", "min", "max", "variant", "of", "baseline"))
            metric = self.text(raw.get("metric"), f"{where}.metric")
            if metric != "speedup" and metric not in METRICS and not metric.startswith(SHARE_PREFIX):
                raise self.fail(
                    f"{where}.metric",
                    f"unknown metric {metric!r}; known: {', '.join(METRICS)}, speedup, {SHARE_PREFIX}<instance>",
                )
            low = None if raw.get("min") is None else self.number(raw["min"], f"{where}.min", -1e12, 1e12)
            high = None if raw.get("max") is None else self.number(raw["max"], f"{where}.max", -1e12, 1e12)
            if low is None and high is None:
                raise self.fail(where, "give min or max (or both)")
            for key in ("variant", "baseline"):
                if raw.get(key) is not None and str(raw[key]) not in variants:
                    raise self.fail(f"{where}.{key}", f"no variant {raw[key]!r}; variants: {', '.join(variants)}")
            of = raw.get("of")
            if metric == "speedup":
                if of not in METRICS:
                    raise self.fail(f"{where}.of", f"speedup needs of: one of {', '.join(METRICS)}")
                if raw.get("variant") is None or raw.get("baseline") is None:
                    raise self.fail(where, "speedup needs baseline: and variant: (names of two variants)")
            elif of is not None or raw.get("baseline") is not None:
                raise self.fail(where, "of and baseline belong to metric: speedup")
            checks.append(
                Check(
                    metric=metric,
                    min=low,
                    max=high,
                    variant=None if raw.get("variant") is None else str(raw["variant"]),
                    of=of,
                    baseline=None if raw.get("baseline") is None else str(raw["baseline"]),
                )
            )
        return tuple(checks)


def _show(value: Any) -> str:
    return "nothing" if value is None else repr(value)
