"""The page's panels, one module each: its card (the layout) and ``register(app, lab)`` (its callbacks).

:mod:`dashboard.layout` puts the cards on the page and :mod:`dashboard.callbacks` registers every
panel's callbacks; a panel reads and changes the stack only through the :class:`~dashboard.lab.Lab`.
"""

from types import ModuleType

from dashboard.panels import (
    actions,
    autoscaler,
    experiments,
    failover,
    grafana,
    knobs,
    lessons,
    live,
    load,
    presses,
    topology,
    trafficmap,
)

__all__ = ["PANELS"]

# Each with a ``register(app, lab)``, in the page's order.
PANELS: tuple[ModuleType, ...] = (
    actions, trafficmap, topology, presses, load, knobs, live, autoscaler, failover, lessons, experiments, grafana,
)  # fmt: skip
