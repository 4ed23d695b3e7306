"""The control app and the load engine it drives."""
