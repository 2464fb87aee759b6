"""The one seam through which views learn who is calling.

An *authenticator* turns a request into a `Caller` (`exchange.identity`, plain data) or raises. The app asks the
authenticator registered under `app.extensions["exchange.authenticator"]` once per request, before any `/v1` view
runs, and keeps the result on `g`.
The released authenticator is OAuth2 + DPoP (`exchange.auth.protect.OAuth2Authenticator`); the agency is never taken
from a client-supplied header. The CLI and the demo data loader call services directly with an explicit `Caller`.
"""

from __future__ import annotations

from typing import Protocol

from flask import Flask, Request, current_app, g

from exchange.identity import Caller
from exchange.protocol.errors import Unauthenticated


class Authenticator(Protocol):
    def authenticate(self, request: Request) -> Caller:
        """Return the verified caller or raise an `ExchangeError`."""
        ...


def install_authenticator(app: Flask, authenticator: Authenticator) -> None:
    app.extensions["exchange.authenticator"] = authenticator


def authenticate(request: Request) -> Caller:
    authenticator: Authenticator = current_app.extensions["exchange.authenticator"]
    caller = authenticator.authenticate(request)
    g.caller = caller
    return caller


def current_caller() -> Caller:
    caller: Caller | None = g.get("caller")
    if caller is None:
        raise Unauthenticated()
    return caller
