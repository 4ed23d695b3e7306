"""Configuration from the environment: defaults, then environment variables, then overrides.

Each service declares one dataclass whose fields are built with :func:`setting`; the
dataclass is the single documented place for that service's configuration.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["ConfigError", "describe_config", "load_config", "setting"]

C = TypeVar("C")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value is missing or cannot be parsed."""


def setting(default: Any, env: str, doc: str) -> Any:
    """Declare a config field read from environment variable ``env`` (``doc`` documents it)."""
    if isinstance(default, (list, dict)):
        # A fresh copy per instance: changing one config's list must not change the default.
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata={"env": env, "doc": doc})
    return dataclasses.field(default=default, metadata={"env": env, "doc": doc})


def _parse(raw: str, kind: Any, env: str) -> Any:
    try:
        if kind is bool:
            text = raw.strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError(f"expected one of {sorted(_TRUE | _FALSE)}")
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if typing.get_origin(kind) is list:
            return [part.strip() for part in raw.split(",") if part.strip()]
        return raw
    except ValueError as exc:
        raise ConfigError(f"{env}={raw!r} is not a valid {getattr(kind, '__name__', kind)}: {exc}") from None


def load_config(
    cls: type[C], overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> C:
    """Build ``cls`` from its defaults, the environment, then explicit ``overrides`` (by field name)."""
    environ = os.environ if environ is None else environ
    overrides = dict(overrides or {})
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name in overrides:
            values[field.name] = overrides.pop(field.name)
            continue
        env = field.metadata.get("env")
        if env and environ.get(env, "") != "":
            values[field.name] = _parse(environ[env], hints[field.name], env)
    if overrides:
        raise ConfigError(f"unknown setting(s) for {cls.__name__}: {', '.join(sorted(overrides))}")
    return cls(**values)


def describe_config(cls: type) -> list[tuple[str, Any, str]]:
    """Return ``(ENV_NAME, default, doc)`` for every setting of ``cls`` (for docs and ``--help``)."""
    rows = []
    for field in dataclasses.fields(cls):
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        rows.append((field.metadata.get("env", ""), default, field.metadata.get("doc", "")))
    return rows
