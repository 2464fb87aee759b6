"""The one seam through which views learn who is calling.

An *authenticator* turns a request into a `Caller` or raises. The app asks the authenticator registered under
`app.extensions["exchange.authenticator"]` once per request, before any `/v1` view runs, and keeps the result on `g`.
The released authenticator is OAuth2 + DPoP (`exchange.auth.protect.OAuth2Authenticator`); the agency is never taken
from a client-supplied header. The CLI and the demo data loader call services directly with an explicit `Caller`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from flask import Flask, Request, current_app, g

from exchange.protocol.errors import Unauthenticated

AGENCIES = ("interior", "border", "prosecutor", "auditor", "security", "exchange")


@dataclass(frozen=True)
class ResponseKey:
    """The calling client's active `enc` key (kid and public `x`), as the authenticator found it with the client's
    status, in the same query: responses are sealed to it without looking it up again."""

    kid: str
    x: str


@dataclass(frozen=True, kw_only=True)
class Caller:
    agency: str
    client_id: str | None = None
    officer: str | None = None  # the human operator's opaque id: logged, never trusted for authorisation
    purpose: str | None = None
    case_ref: str | None = None
    scopes: frozenset[str] = frozenset()
    token_jti: str | None = None
    dpop_jti: str | None = None
    dpop_proof: str | None = field(default=None, repr=False)  # answered by a bodiless request's response envelope
    response_key: ResponseKey | None = field(default=None, repr=False)  # None: not looked up, or none registered

    def __post_init__(self) -> None:
        if self.agency not in AGENCIES:
            raise ValueError(f"unknown agency {self.agency!r}")


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
