"""Parser wiring for ``scalelab``: one sub-command per verb, each implemented in ``commands/``."""

from __future__ import annotations

import argparse
import sys

from scalelab import catalog
from scalelab.autoscaler import SIGNALS
from scalelab.cli.commands import (
    add,
    autoscale,
    down,
    experiment,
    instance,
    kubernetes,
    lesson,
    remove,
    secrets,
    status,
    swarm,
    up,
)
from scalelab.cli.context import Context, pick_orchestrator
from scalelab.orchestrators import LocalOrchestrator, Orchestrator
from scalelab.paths import RUN_DIR_ENV, find_run_dir, offset_run_dir

INSTANCE_VERBS = (
    ("kill", "kill an instance as a crash would (SIGKILL)"),
    ("start", "start a killed instance again"),
    ("pause", "freeze an instance (SIGSTOP): a hung process, not a dead one"),
    ("resume", "unfreeze a paused instance"),
)


ENGINES = ("local", "swarm")
ENGINE_HELP = (
    "local: processes on this machine (default); swarm: `docker stack deploy` onto the swarm this Docker engine "
    "belongs to (docker compose runs the compose stack)"
)


def build_parser() -> argparse.ArgumentParser:
    """Return the ``scalelab`` argument parser."""
    parser = argparse.ArgumentParser(prog="scalelab", description="Run and control the ScaleLab stack.")
    parser.add_argument(
        "--run-dir",
        default=None,
        help=f"where the stack's state, logs and data live (env {RUN_DIR_ENV}; default: the nearest ./.scalelab "
        "holding a stack, in this folder or above, else ~/.local/state/scalelab)",
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")
    scalable = catalog.scalable()
    example = ", ".join(f"{name}-1" for name in scalable)

    p = verbs.add_parser("up", help="start the whole stack and wait until it is healthy")
    p.add_argument("--detach", "-d", action="store_true", help="return once healthy instead of running until Ctrl-C")
    p.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="add this to every port, to run beside another stack (its own run directory unless --run-dir)",
    )
    p.add_argument("--results-dir", help="where experiments run from the page write reports (default: beside the run)")
    p.add_argument("--engine", choices=ENGINES, default="local", help=ENGINE_HELP)
    p.add_argument(
        "--open-ports",
        action="store_true",
        help="swarm only: let the network reach the published ports (a lab room); by default only this machine can",
    )
    p.set_defaults(
        func=lambda ctx, a: swarm.up(ctx, a.open_ports) if a.engine == "swarm" else up.run(ctx, a.detach, a.port_offset)
    )

    p = verbs.add_parser("down", help="stop a detached stack")
    p.add_argument("--engine", choices=ENGINES, default="local", help=ENGINE_HELP)
    p.set_defaults(func=lambda ctx, a: swarm.down(ctx) if a.engine == "swarm" else down.run(ctx))

    p = verbs.add_parser("status", help="show every instance with its health")
    p.set_defaults(func=lambda ctx, a: status.run(ctx))

    for action, text in INSTANCE_VERBS:
        p = verbs.add_parser(action, help=text)
        p.add_argument("instance", help="an instance of `scalelab status`, e.g. cache or " + example)
        p.set_defaults(func=lambda ctx, a, action=action: instance.run(ctx, action, a.instance))

    p = verbs.add_parser("add", help="start one more instance and put it in rotation")
    p.add_argument("service", choices=scalable)
    p.set_defaults(func=lambda ctx, a: add.run(ctx, a.service))

    p = verbs.add_parser("remove", help="take an instance out of rotation, stop it and forget it (scale in)")
    p.add_argument("instance", help=f"an instance of a service that scales ({', '.join(scalable)}), e.g. {example}")
    p.set_defaults(func=lambda ctx, a: remove.run(ctx, a.instance))

    p = verbs.add_parser(
        "lesson",
        help="list the lessons, or run one headless against the running stack and write its worksheet",
        description="A lesson is a predict-then-measure worksheet on the live stack (docs/lessons.md). Give your "
        "predictions, run its steps (experiments), and get a self-contained HTML worksheet with what was measured "
        "beside them; --answer-key writes the measured values alone.",
    )
    p.add_argument("name", nargs="?", help="a built-in lesson (see --list) or the path of a lesson file (.md)")
    p.add_argument("--list", action="store_true", dest="list_only", help="list the built-in lessons and exit")
    p.add_argument(
        "--predict", action="append", default=[], type=lesson.key_value, metavar="ID=VALUE",
        help="a prediction, e.g. --predict kill_detection=0.5 (repeatable)",
    )  # fmt: skip
    p.add_argument("--predictions", dest="predictions_file", metavar="FILE", help="a YAML file of id: answer")
    p.add_argument("--student", default="", help="the name on the worksheet")
    p.add_argument("--answer-key", action="store_true", help="write the measured values alone, for an instructor")
    p.add_argument("--out", help="the worksheet's file (default: in the results directory)")
    p.add_argument("--results-dir", help="where the steps' reports go (default: as for experiments)")
    p.set_defaults(
        func=lambda ctx, a: lesson.run(
            ctx, a.name, a.predict, a.predictions_file, a.student, a.answer_key, a.out, a.results_dir, a.list_only
        )
    )

    p = verbs.add_parser(
        "autoscale",
        help="switch the control page's autoscaler on or off, or show what it does",
        description="The autoscaler reads Prometheus every second and scales a service out and in to keep its "
        "signal (requests in flight per instance, or p95 latency) near the target. It runs in the control page, "
        "which marks each decision on its charts. Settings left out keep their last (or default) values.",
    )
    p.add_argument("switch", choices=("on", "off", "status"))
    p.add_argument("--service", choices=scalable, help="the service to scale (default: microservice)")
    p.add_argument("--signal", choices=SIGNALS, help="in_flight (default) or p95_ms")
    p.add_argument("--target", type=float, help="the signal's target (in flight per instance, or ms)")
    p.add_argument("--min", type=int, dest="min_instances", help="fewest instances (default: the standard ones)")
    p.add_argument("--max", type=int, dest="max_instances", help="most instances (default: the catalog's maximum)")
    p.add_argument("--cooldown", type=float, dest="cooldown_seconds", help="seconds to wait after each change")
    p.set_defaults(
        func=lambda ctx, a: autoscale.run(
            ctx,
            a.switch,
            {
                name: getattr(a, name)
                for name in ("service", "signal", "target", "min_instances", "max_instances", "cooldown_seconds")
                if getattr(a, name) is not None
            },
        )
    )

    p = verbs.add_parser(
        "secrets", help="write fresh secrets for the compose stack to .env (docker compose needs them)"
    )
    p.add_argument("--env-file", help="where to write them (default: .env beside docker-compose.yml)")
    p.add_argument("--force", action="store_true", help="replace the secrets of an existing file")
    p.set_defaults(func=lambda ctx, a: secrets.run(ctx, a.env_file, a.force))

    p = verbs.add_parser(
        "kubernetes",
        help="write a Kubernetes base (kustomize) for the lab and print how to run it on kind",
        description="Write the lab's Kubernetes manifests, generated from the catalog, as a kustomize base in DIR, "
        "then print the commands that run it on kind (docs/kubernetes.md: kind or k3s). Needs no cluster.",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write the base into (made if missing)")
    p.set_defaults(func=lambda ctx, a: kubernetes.run(ctx, a.out))

    p = verbs.add_parser(
        "experiment",
        help="run an experiment against the running stack, write its report, exit 3 if a check fails",
        description="Run an experiment (a built-in one or a YAML file) against the running stack. The report goes "
        "to RESULTS_DIR/<time>-<name>/report.html; the exit code is 3 when a check fails.",
    )
    p.add_argument("name", nargs="?", help="a built-in experiment (see --list) or the path of a YAML file")
    p.add_argument("--list", action="store_true", dest="list_only", help="list the built-in experiments and exit")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        type=experiment.key_value,
        dest="sets",
        metavar="KEY=VALUE",
        help="change a field of the experiment, e.g. --set load.duration=5 (repeatable)",
    )
    p.add_argument("--seed", type=int, help="the load's random seed (same seed, same request sequence)")
    p.add_argument(
        "--results-dir",
        help="where the results directory goes (default: `results` beside the run directory, where the page lists it)",
    )
    p.add_argument("--no-progress", action="store_false", dest="progress", help="no progress bar (for logs)")
    p.set_defaults(
        func=lambda ctx, a: experiment.run(ctx, a.name, a.sets, a.seed, a.results_dir, a.list_only, a.progress)
    )
    return parser


def cli(argv: list[str] | None = None) -> int:
    """Run ``scalelab`` with ``argv`` and return its exit code."""
    args = build_parser().parse_args(argv)
    run_dir = find_run_dir(args.run_dir)
    if args.verb == "up" and args.port_offset and args.run_dir is None:
        # A second stack beside the first needs its own state: one run directory per offset.
        run_dir = offset_run_dir(run_dir, args.port_offset)
    # Starting and stopping a stack is local-process business; the other verbs act on
    # whichever stack runs, local or compose.
    if args.verb in ("up", "down") and args.engine == "swarm":
        orchestrator: Orchestrator = swarm.orchestrator(run_dir)
    elif args.verb in ("up", "down"):
        orchestrator = LocalOrchestrator(run_dir, results_dir=getattr(args, "results_dir", None))
    else:
        orchestrator = pick_orchestrator(run_dir)
    return int(args.func(Context(orchestrator), args))


def main() -> None:
    """Console-script entry point."""
    sys.exit(cli())
