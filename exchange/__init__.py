"""Returnee Exchange: the secure inter-agency register of returnees under the amnesty programme.

`create_app` lives in `exchange.app` and is imported on first use, so that the partner client library
(`exchange.partner`) can be imported without the server's dependencies (Flask, SQLAlchemy, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the exchange (see `exchange.app.create_app`)."""
    from exchange.app import create_app as build

    return build(config)
