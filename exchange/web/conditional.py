"""Conditional requests (RFC 9110 §13): the version a write names in `If-Match`."""

from __future__ import annotations

from flask import request

from exchange.protocol.errors import PreconditionFailed, PreconditionRequired


def if_match(*, required: bool) -> int | None:
    """The version named by `If-Match` (`"<version>"`), None for `*` or, where allowed, no header.

    A weak or unparsable tag can never match a version, so it fails the precondition rather than being ignored.
    """
    header = request.headers.get("If-Match")
    if header is None:
        if required:
            raise PreconditionRequired()
        return None
    if header.strip() == "*":
        return None
    tags = request.if_match.as_set(include_weak=False)
    if len(tags) != 1 or not next(iter(tags)).isdigit():
        raise PreconditionFailed("If-Match must carry exactly one ETag you received, such as \"3\".")
    return int(next(iter(tags)))
