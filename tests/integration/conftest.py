"""Integration tests share the session stack defined in tests/conftest.py; its helpers live in tests/stack.py."""

from __future__ import annotations

from tests.stack import REQUEST_TIMEOUT, Stack, free_offset, started_stack, wait_for

__all__ = ["REQUEST_TIMEOUT", "Stack", "free_offset", "started_stack", "wait_for"]
