"""The classic microservice-routing test: /process N times at concurrency C, the split between instances.

    python tests/classic/microservice_routing_test.py --requests 50 --concurrency 5

Writes results/microservice_distribution.png, and the full report of the
microservice-routing experiment under results/<time>-microservice-routing/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script (python tests/classic/...): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.classic import common


def main(argv: list[str] | None = None) -> int:
    """Run the microservice-routing experiment with the classic arguments."""
    parser = common.parser("Call /process through the gateways and show how the microservice instances split it.")
    parser.add_argument("--requests", type=int, default=50, help="how many requests (default 50)")
    parser.add_argument("--concurrency", type=int, default=5, help="how many at once (default 5)")
    args = parser.parse_args(argv)
    overrides = {"load.requests": args.requests, "load.users": args.concurrency}
    result = common.run("microservice-routing", overrides, args, ("instances", "histogram"))
    if result is not None:
        metrics = result.summary["variants"][0]["metrics"]
        for key, share in sorted(metrics.items()):
            if key.startswith("share.microservice"):
                print(f"  {key.removeprefix('share.')}: {share * metrics['answered']:.0f} requests ({share:.1%})")
    return common.finish(result)


if __name__ == "__main__":
    sys.exit(main())
