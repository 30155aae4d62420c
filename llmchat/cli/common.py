"""Shared option parsing for the commands."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class State:
    """Global options, set by the root callback."""

    models_path: str | None = None
    debug: bool = False

    def registry(self):
        from ..registry import load_registry

        return load_registry(self.models_path)
