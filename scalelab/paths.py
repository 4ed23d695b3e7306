"""Where the lab's files are: the stack files it ships, and the run and results directories of a stack.

Installed as a package (``pip install .``), the Prometheus rules and the Grafana provisioning
come with it under ``scalelab/stackfiles/``; in a source checkout they are the repository's own
``prometheus/`` and ``grafana/`` folders. The run directory is never tied to the current
directory by accident: it is named (``--run-dir``, SCALELAB_RUN_DIR) or found by walking up from
the current directory to the nearest folder holding a ``.scalelab`` run directory, else the
user's own (``~/.local/state/scalelab``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "RUN_DIR_ENV",
    "RUN_DIR_NAME",
    "find_run_dir",
    "offset_run_dir",
    "results_dir_for",
    "source_root",
    "stack_file",
]

RUN_DIR_NAME = ".scalelab"
RUN_DIR_ENV = "SCALELAB_RUN_DIR"
STATE_FILE = "state.json"
_PACKAGE = Path(__file__).resolve().parent
_SHIPPED = _PACKAGE / "stackfiles"


def source_root() -> Path | None:
    """Return the repository checkout this package runs from, or None when it runs installed."""
    root = _PACKAGE.parent
    return root if (root / "services").is_dir() and (root / "pyproject.toml").is_file() else None


def stack_file(*parts: str) -> Path:
    """Return a shipped stack file or folder, e.g. ``stack_file("prometheus", "rules")``."""
    shipped = _SHIPPED.joinpath(*parts)
    if shipped.exists():
        return shipped
    root = source_root()
    if root is not None and root.joinpath(*parts).exists():
        return root.joinpath(*parts)
    raise FileNotFoundError(
        f"{'/'.join(parts)} is missing from this installation ({_SHIPPED}); reinstall ScaleLab (`pip install .`)"
    )


def _state_home(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "scalelab"


def find_run_dir(
    explicit: str | os.PathLike[str] | None = None, cwd: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Return the run directory: ``explicit``, else $SCALELAB_RUN_DIR, else the nearest ``.scalelab`` that
    holds a stack's state in the current directory or above, else the user's state directory."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit).expanduser().resolve()
    if environ.get(RUN_DIR_ENV):
        return Path(environ[RUN_DIR_ENV]).expanduser().resolve()
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / RUN_DIR_NAME / STATE_FILE).is_file():
            return folder / RUN_DIR_NAME
    return _state_home(environ)


def results_dir_for(run_dir: Path) -> Path:
    """Return where reports go by default for a stack run from ``run_dir``: beside it, in ``results``."""
    run_dir = run_dir.resolve()
    if run_dir.name == RUN_DIR_NAME:
        return run_dir.parent / "results"
    return run_dir / "results"


def offset_run_dir(run_dir: Path, port_offset: int) -> Path:
    """Return the run directory of a stack moved by ``port_offset`` beside the one in ``run_dir``."""
    return run_dir.with_name(f"{run_dir.name}+{port_offset}") if port_offset else run_dir
