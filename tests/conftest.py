"""Settings for the whole suite."""

from __future__ import annotations

import os

# The CLI acts on a running compose stack when it finds one; tests that call it with their own
# run directory mean their own local processes, whatever else runs on the machine.
os.environ.setdefault("SCALELAB_ORCHESTRATOR", "local")
