"""ScaleLab's headless lab: the catalog of the stack, its orchestrators, the load engine, experiments and the CLI.

The page (``dashboard``) calls this package; the services (``services``) know nothing of it.
"""
