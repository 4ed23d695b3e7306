"""The page's panels, one module each: its card (the layout) and ``register(app, lab)`` (its callbacks).

:mod:`dashboard.layout` puts the cards on the page and :mod:`dashboard.callbacks` registers every
panel's callbacks; a panel reads and changes the stack only through the :class:`~dashboard.lab.Lab`.
"""
