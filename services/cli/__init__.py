"""The ``scalelab`` command line."""
