"""Gunther's Universal Scalability Law, fitted to throughput measured at several instance counts.

    X(N) = lambda * N / (1 + sigma * (N - 1) + kappa * N * (N - 1))

lambda is one instance's throughput, sigma the share of work that contends for something shared
(it caps the speedup at 1/sigma, as Amdahl's law does) and kappa the cost of keeping instances
coherent with each other (it makes throughput fall past a peak). With lambda taken from the
one-instance point, ``N / C(N) - 1 = sigma * (N - 1) + kappa * N * (N - 1)`` where
``C(N) = X(N) / lambda``: a linear least-squares fit in sigma and kappa (Gunther, *Guerrilla
Capacity Planning*, ch. 5), solved here with numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["MIN_POINTS", "UslFit", "fit"]

# Two unknowns and the one-instance point that sets lambda: three distinct instance counts at least.
MIN_POINTS = 3


@dataclass(frozen=True)
class UslFit:
    """The fitted law: lambda, sigma (contention), kappa (coherency), and what they predict."""

    lam: float
    sigma: float
    kappa: float
    points: tuple[tuple[int, float], ...]  # (instances, measured throughput)

    def predict(self, n: float) -> float:
        """Return the throughput the law predicts at ``n`` instances."""
        return self.lam * n / (1 + self.sigma * (n - 1) + self.kappa * n * (n - 1))

    @property
    def peak_instances(self) -> float:
        """Return where throughput peaks: sqrt((1 - sigma) / kappa); infinite when kappa is 0 (it only levels off)."""
        if self.kappa <= 0:
            return math.inf
        return math.sqrt(max(1 - self.sigma, 0.0) / self.kappa)

    @property
    def peak_throughput(self) -> float:
        """Return the highest throughput the law predicts (its ceiling lambda/sigma when it never peaks)."""
        if math.isinf(self.peak_instances):
            return self.lam / self.sigma if self.sigma > 0 else math.inf
        return self.predict(self.peak_instances)

    @property
    def knee(self) -> int:
        """Return the first instance count past which one more instance adds less than half of what the first gave."""
        n = 1
        while n < 1000 and self.predict(n + 1) - self.predict(n) >= self.lam / 2:
            n += 1
        return n

    def residual(self) -> float:
        """Return the largest relative gap between a measured point and the law (0.05: within 5 %)."""
        return max(abs(x - self.predict(n)) / x for n, x in self.points if x > 0)


def fit(points: Sequence[tuple[int, float]]) -> UslFit:
    """Return the law fitted to ``(instances, throughput)`` points, one of them at 1 instance.

    Raise ValueError when the points cannot make a fit: fewer than :data:`MIN_POINTS` distinct
    instance counts, none at 1, or a throughput that is not positive. sigma and kappa are kept at 0 or more.
    """
    by_n: dict[int, list[float]] = {}
    for n, x in points:
        if n < 1 or not math.isfinite(x) or x <= 0:
            raise ValueError(f"a scaling-law point needs 1 or more instances and a positive throughput, not {n}, {x}")
        by_n.setdefault(int(n), []).append(float(x))
    if len(by_n) < MIN_POINTS or 1 not in by_n:
        raise ValueError(
            f"fitting the scaling law needs throughput at {MIN_POINTS} or more instance counts, one of them 1; "
            f"got {sorted(by_n)}"
        )
    # Imported here: the control page imports this module through the experiments' runner, and
    # numpy would add about 15 MB to its resident memory for a fit it seldom makes.
    import numpy as np

    measured = tuple(sorted((n, sum(xs) / len(xs)) for n, xs in by_n.items()))
    lam = measured[0][1]
    others = [(n, x) for n, x in measured if n > 1]
    design = np.array([[n - 1, n * (n - 1)] for n, _ in others], dtype=float)
    deviation = np.array([n / (x / lam) - 1 for n, x in others], dtype=float)
    (sigma, kappa), *_ = np.linalg.lstsq(design, deviation, rcond=None)
    if kappa < 0:  # no sign of coherency cost: fit contention alone
        kappa = 0.0
        sigma = float(np.dot(design[:, 0], deviation) / np.dot(design[:, 0], design[:, 0]))
    if sigma < 0:  # better than linear (noise, or a warmer cache): contention alone cannot be negative
        sigma = 0.0
        kappa = max(0.0, float(np.dot(design[:, 1], deviation) / np.dot(design[:, 1], design[:, 1])))
    return UslFit(lam, float(sigma), float(kappa), measured)
