"""The classic caching test: for each iteration a new key, requested N times; miss versus hit latency.

    python tests/classic/caching_test.py --iterations 5 --requests 10

Writes results/caching_comparison.png, and the full report of the caching experiment under
results/<time>-caching/.
"""

from __future__ import annotations

import sys
from pathlib import Path

if not __package__:  # run as a script (python tests/classic/...): make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.classic import common


def main(argv: list[str] | None = None) -> int:
    """Run the caching experiment with the classic arguments."""
    parser = common.parser("Request new keys several times each and compare cache-miss with cache-hit latency.")
    parser.add_argument("--iterations", type=int, default=5, help="how many new keys (default 5)")
    parser.add_argument("--requests", type=int, default=10, help="requests per key (default 10)")
    args = parser.parse_args(argv)
    overrides = {"load.requests": args.iterations * args.requests, "load.repeat": args.requests}
    result = common.run("caching", overrides, args, ("caching", "histogram"))
    if result is not None:
        metrics = result.summary["variants"][0]["metrics"]
        if metrics.get("cache_speedup"):
            print(
                f"Cache miss: {metrics['miss_mean_ms']:.1f} ms on average, hit: {metrics['hit_mean_ms']:.1f} ms; "
                f"hits are {metrics['cache_speedup']:.1f}x faster (hit ratio {metrics['cache_hit_ratio']:.0%})"
            )
    return common.finish(result)


if __name__ == "__main__":
    sys.exit(main())
