"""Wire the token machinery into an app: key store, replay cache, authorization server, authenticator."""

from __future__ import annotations

from flask import Flask

from exchange.auth.protect import OAuth2Authenticator
from exchange.auth.replay import DatabaseReplayCache, RedisReplayCache, TransactionalReplayCache
from exchange.auth.server import build_server
from exchange.db import db
from exchange.keys.ring import key_ring
from exchange.protocol.policy import ALL_SCOPES
from exchange.protocol.replay import ReplayCache
from exchange.web.caller import install_authenticator


def init_auth(app: Flask) -> None:
    issuer = app.config["ISSUER"].rstrip("/")
    audience = app.config.get("API_AUDIENCE") or f"{issuer}/v1"
    app.config["API_AUDIENCE"] = audience
    keystore = key_ring(app)
    replay: ReplayCache = app.config.get("REPLAY_CACHE") or (
        RedisReplayCache(app.config["REDIS_URL"]) if app.config.get("REDIS_URL") else DatabaseReplayCache(
            db.engine(app))
    )
    app.extensions["exchange.replay"] = replay
    # The OAuth endpoints claim in the request's transaction, committed with their audit entry (exchange.auth.views).
    token_replay = TransactionalReplayCache(replay, lambda: db.session)
    app.extensions["exchange.token_replay"] = token_replay

    app.extensions["exchange.oauth_server"] = build_server(
        issuer=issuer, audience=audience, keystore=keystore, replay=token_replay, session=lambda: db.session,
        scopes=ALL_SCOPES,
    )
    install_authenticator(app, app.config.get("AUTHENTICATOR") or OAuth2Authenticator(
        keystore=keystore, replay=replay, issuer=issuer, audience=audience, session=lambda: db.session,
    ))

    from exchange.auth.views import bp

    app.register_blueprint(bp)
