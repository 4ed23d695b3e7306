"""The Universal Scalability Law fit: it recovers the coefficients of throughput it made, and refuses too few points."""

from __future__ import annotations

import math

import pytest

from scalelab.experiments.usl import UslFit, fit


def law(lam: float, sigma: float, kappa: float, n: int) -> float:
    return lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))


def test_it_recovers_the_coefficients_of_points_on_the_law():
    points = [(n, law(100.0, 0.1, 0.02, n)) for n in (1, 2, 3, 4, 6)]
    result = fit(points)
    assert result.lam == pytest.approx(100.0)
    assert result.sigma == pytest.approx(0.1, abs=1e-9) and result.kappa == pytest.approx(0.02, abs=1e-9)
    assert result.peak_instances == pytest.approx(math.sqrt(0.9 / 0.02))
    assert result.peak_throughput == pytest.approx(law(100.0, 0.1, 0.02, result.peak_instances))
    assert result.residual() < 1e-9


def test_linear_scaling_has_no_peak_and_no_knee_within_reach():
    result = fit([(1, 50.0), (2, 100.0), (3, 150.0), (4, 200.0)])
    assert result.sigma == pytest.approx(0.0, abs=1e-9) and result.kappa == pytest.approx(0.0, abs=1e-9)
    assert math.isinf(result.peak_instances) and math.isinf(result.peak_throughput)
    assert result.knee == 1000  # never: every instance adds a whole one's worth


def test_two_cores_shared_by_four_instances_level_off_at_the_cores():
    # What a 2-core machine shows for CPU-bound instances: 1 → 100, 2 → 190, then nothing more.
    result = fit([(1, 100.0), (2, 190.0), (3, 195.0), (4, 196.0)])
    assert result.sigma > 0.3 or result.kappa > 0.05
    assert result.knee == 2
    assert result.peak_throughput < 260


def test_noise_that_looks_better_than_linear_keeps_the_coefficients_at_zero_or_more():
    result = fit([(1, 100.0), (2, 210.0), (3, 305.0)])
    assert result.sigma >= 0 and result.kappa >= 0


@pytest.mark.parametrize(
    "points", [[(1, 10.0), (2, 20.0)], [(2, 10.0), (3, 20.0), (4, 25.0)], [(1, 10.0), (2, 0.0), (3, 5.0)]]
)
def test_points_that_cannot_make_a_fit_are_refused(points):
    with pytest.raises(ValueError, match="scaling"):
        fit(points)


def test_repeated_counts_are_averaged():
    assert fit([(1, 90.0), (1, 110.0), (2, 200.0), (3, 300.0)]).lam == 100.0
    assert isinstance(fit([(1, 1.0), (2, 2.0), (3, 3.0)]), UslFit)
