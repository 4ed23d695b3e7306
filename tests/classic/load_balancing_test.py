"""The classic load-balancing test: N requests at concurrency C, the split between gateways, a latency histogram.

    python tests/classic/load_balancing_test.py --requests 100 --concurrency 10

Writes results/load_balancing_distribution.png and results/response_time_histogram.png, and
the full report of the load-balancing experiment under results/<time>-load-balancing/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script (python tests/classic/...): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.classic import common


def main(argv: list[str] | None = None) -> int:
    """Run the load-balancing experiment with the classic arguments."""
    parser = common.parser("Send requests through the load balancer and show how the gateways split them.")
    parser.add_argument("--requests", type=int, default=100, help="how many requests (default 100)")
    parser.add_argument("--concurrency", type=int, default=10, help="how many at once (default 10)")
    args = parser.parse_args(argv)
    overrides = {"load.requests": args.requests, "load.users": args.concurrency}
    result = common.run("load-balancing", overrides, args, ("gateways", "histogram"))
    if result is not None:
        metrics = result.summary["variants"][0]["metrics"]
        print(f"Requests: {metrics['requests']}, failed: {metrics['errors']}")
        for key, share in sorted(metrics.items()):
            if key.startswith("share.gateway"):
                print(f"  {key.removeprefix('share.')}: {share * metrics['answered']:.0f} requests ({share:.1%})")
        print(f"Average response time: {metrics['mean_ms']:.1f} ms (p99 {metrics['p99_ms']:.1f} ms)")
    return common.finish(result)


if __name__ == "__main__":
    sys.exit(main())
