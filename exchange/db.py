"""The database: one SQLAlchemy 2 engine and session factory per app, a request-scoped session.

A small extension rather than Flask-SQLAlchemy: the engine needs per-dialect durability settings (SQLite WAL with
synchronous=FULL and foreign keys on), services receive a plain `Session`, and migrations (Alembic) own the schema.
"""

from __future__ import annotations

import logging
import os
import uuid
import weakref
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context
from sqlalchemy import JSON, DateTime, Integer, MetaData, String, create_engine, event, update
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, declared_attr, mapped_column, object_session, sessionmaker
from sqlalchemy.types import TypeDecorator, Uuid

from exchange.files import secure_sqlite_files, sqlite_file_path
from exchange.outages import note_outage, outage_error, outage_noted

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


def changed(record: Base) -> bool:
    """Whether a loaded record has a column whose value differs from what was read (setting a value to the one it
    already has is no change). Collections are not columns: they are not looked at."""
    session = object_session(record)
    return session is not None and session.is_modified(record, include_collections=False)


def version_holds(session: Session, record: Record) -> bool:
    """For a write that changes nothing: whether the row still has the version that was read, checked the way a real
    write is (an UPDATE that sets `version` to itself, under the row's write lock), so that a no-op acknowledged
    with `If-Match` can never be a stale one. Nothing changes, not even `updated_at`."""
    model = type(record)
    statement = (update(model).where(model.id == record.id, model.version == record.version)
                 .values(version=model.version, updated_at=model.updated_at)  # (no `onupdate` either)
                 .execution_options(synchronize_session=False))
    result = session.execute(statement)
    return bool(getattr(result, "rowcount", 0) == 1)


_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def _quietly(close: Callable[[], None]) -> None:
    try:
        close()
    except Exception:  # noqa: BLE001  (a dead connection: the pool replaces it)
        if not outage_noted():  # an outage is logged once per request, where it was met
            log.warning("close failed", extra={"code": "connection_lost"})


def rollback_quietly(session: Session) -> None:
    """Roll back, whatever state the connection is in (a dead one raises; the next checkout replaces it)."""
    try:
        session.rollback()
    except Exception:  # noqa: BLE001
        if not outage_noted():  # an outage is logged once per request, where it was met
            log.warning("rollback failed", extra={"code": "commit_failed"})


def dispose_engines() -> None:
    """Close every pooled connection this process opened (the CLI calls this when a command ends)."""
    for engine in list(_engines):
        engine.dispose()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    engine = _make_engine(url, echo=echo)
    _engines.add(engine)

    @event.listens_for(engine, "handle_error")
    def _note_outage(context: Any) -> None:
        # Wherever a connection error is caught later (an audit hook, /readyz), the request's 503 names the outage
        # (`database_unavailable`) and it is logged once. A failed pre-ping is not one: the pool reconnects.
        if context.is_pre_ping or not has_request_context():
            return
        outage = outage_error(context.original_exception)
        if outage is not None:
            note_outage(outage, context.original_exception)

    return engine


def missing_sqlite_file(url: str) -> str | None:
    """The path of a SQLite database file that `url` names and that does not exist (None for anything else).

    Opening it would create an empty database: commands that only read the register or the log check this first,
    so that a mistyped `EXCHANGE_DATABASE_URL` is an error and not an empty, "valid" log."""
    parsed = make_url(url)
    path = sqlite_file_path(parsed.database) if parsed.get_backend_name() == "sqlite" else None
    return None if path is None or os.path.exists(path) else path


def _make_engine(url: str, *, echo: bool = False) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})

        @event.listens_for(engine, "do_connect")
        def _private_files(_dialect: Any, _record: Any, _cargs: Any, _cparams: Any) -> None:
            secure_sqlite_files(engine.url.database)  # before SQLite opens (or creates) the file

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets readers run beside the writer; synchronous=FULL makes an acknowledged commit durable.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()
            secure_sqlite_files(engine.url.database)  # the -wal and -shm files the first connection created

        return engine
    # connect_timeout: an unreachable server (not only a refusing one) is a 503 within seconds, not a hung worker
    return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=5, max_overflow=10,
                         connect_args={"connect_timeout": 5})


class Database:
    """Flask extension: `db.init_app(app)`, then `db.session` inside a request or app context."""

    def init_app(self, app: Flask) -> None:
        engine = make_engine(app.config["DATABASE_URL"], echo=app.config.get("SQL_ECHO", False))
        app.extensions["exchange.db"] = engine
        app.extensions["exchange.sessionmaker"] = sessionmaker(bind=engine, expire_on_commit=False)

        @app.teardown_appcontext
        def _close_session(_exc: BaseException | None) -> None:
            # Never raises: the response is ready by now, and an exception here would reach the WSGI server.
            session: Session | None = g.pop("db_session", None)
            if session is not None:
                rollback_quietly(session)  # anything not committed by a service is discarded, never half-written
                _quietly(session.close)
            connection: Connection | None = g.pop("db_connection", None)
            if connection is not None:
                _quietly(connection.close)

    @staticmethod
    def committed() -> bool:
        """Whether this request's unit of work has committed (or may have: a COMMIT whose answer was lost). From
        then on no response may say that nothing was stored (503)."""
        return bool(g.get("db_committed", False)) if has_request_context() else False

    @staticmethod
    def after_commit(callback: Callable[[Response], Response]) -> None:
        """Finish this request's response with `callback(response)` once the unit of work has committed (skipped if
        the response is an error or the commit fails), after the response pipeline's own steps (the audit entry's
        sequencing, the sealing: `exchange.web.pipeline`)."""
        callbacks: list[Callable[[Response], Response]] = g.setdefault("db_after_commit", [])
        callbacks.append(callback)

    @staticmethod
    def release() -> None:
        """End this request's transaction and give its connection back to the pool; the next `db.session` checks
        out another. A long poll calls this before it waits, so that waiting holds no connection."""
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            rollback_quietly(session)
            _quietly(session.close)
        connection: Connection | None = g.pop("db_connection", None)
        if connection is not None:
            _quietly(connection.close)

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
