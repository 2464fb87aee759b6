"""The database: one SQLAlchemy 2 engine and session factory per app, a request-scoped session.

A small extension rather than Flask-SQLAlchemy: the engine needs per-dialect durability settings (SQLite WAL with
synchronous=FULL and foreign keys on), services receive a plain `Session`, and migrations (Alembic) own the schema.
"""

from __future__ import annotations

import logging
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context
from sqlalchemy import JSON, DateTime, Integer, MetaData, String, create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, declared_attr, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator, Uuid

log = logging.getLogger("exchange.db")

# Named constraints so that Alembic migrations are stable and identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone; we store UTC and re-attach it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        str: String(),
    }


def utcnow() -> datetime:
    return datetime.now(UTC)


class Record(Base):
    """Columns every record kind has: UUID key, timestamps and the optimistic-concurrency version."""

    __abstract__ = True

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        # SQLAlchemy checks the version in every UPDATE's WHERE clause: a concurrent writer gets StaleDataError.
        return {"version_id_col": cls.__table__.c.version}


_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def dispose_engines() -> None:
    """Close every pooled connection this process opened (the CLI calls this when a command ends)."""
    for engine in list(_engines):
        engine.dispose()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    engine = _make_engine(url, echo=echo)
    _engines.add(engine)
    return engine


def _make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the writer; synchronous=FULL makes an acknowledged commit durable.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10)


class Database:
    """Flask extension: `db.init_app(app)`, then `db.session` inside a request or app context."""

    def init_app(self, app: Flask) -> None:
        engine = make_engine(app.config["DATABASE_URL"], echo=app.config.get("SQL_ECHO", False))
        app.extensions["exchange.db"] = engine
        app.extensions["exchange.sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)

        @app.teardown_appcontext
        def _close_session(_exc: BaseException | None) -> None:
            session: Session | None = g.pop("db_session", None)
            if session is not None:
                session.rollback()  # anything not committed by a service is discarded, never half-written
                session.close()
            connection: Connection | None = g.pop("db_connection", None)
            if connection is not None:
                connection.close()

    @staticmethod
    def after_commit(callback: Callable[[Response], Response]) -> None:
        """Finish this request's response with `callback(response)` once the unit of work has committed (skipped if
        the response is an error or the commit fails). The audit log sequences the call's entry this way, then the
        envelope layer seals the response with that entry's receipt."""
        callbacks: list[Callable[[Response], Response]] = g.setdefault("db_after_commit", [])
        callbacks.append(callback)

    @staticmethod
    def engine(app: Flask) -> Engine:
        engine: Engine = app.extensions["exchange.db"]
        return engine

    @property
    def session(self) -> Session:
        from flask import current_app

        session: Session | None = g.get("db_session")
        if session is None:
            factory: sessionmaker[Session] = current_app.extensions["exchange.sessionmaker"]
            if has_request_context():
                # One pooled connection for the whole request: its transactions (the request's own, then the audit
                # entry's sequencing after the commit, a refused call's entry) follow each other on it, checked out
                # (and pinged) once instead of once per transaction. Long-lived app contexts (the command line's
                # loops) keep checking out per transaction, and so survive a database restart.
                connection = self.engine(current_app).connect()
                g.db_connection = connection
                session = factory(bind=connection)
            else:
                session = factory()
            g.db_session = session
        return session


db = Database()
