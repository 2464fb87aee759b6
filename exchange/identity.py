"""Who is calling, as plain data: the `Caller` every service receives (from the web layer's caller seam, the CLI or
the demo loader) and the agencies there are. No Flask, no database."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    dpop_jkt: str | None = None  # thumbprint of the DPoP key the token is bound to (cnf.jkt)
    dpop_proof: str | None = field(default=None, repr=False)  # answered by a bodiless request's response envelope
    response_key: ResponseKey | None = field(default=None, repr=False)  # None: not looked up, or none registered

    def __post_init__(self) -> None:
        if self.agency not in AGENCIES:
            raise ValueError(f"unknown agency {self.agency!r}")
