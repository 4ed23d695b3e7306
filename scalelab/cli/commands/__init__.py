"""One module per ``scalelab`` verb."""
