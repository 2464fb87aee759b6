"""Alembic, driven from code: the migrations ship inside the package, so `exchange init` works wherever it is
installed, and the same scripts run on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "heads") -> None:
    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (comma-joined if branches were applied side by side)."""
    with engine.connect() as connection:
        heads = MigrationContext.configure(connection).get_current_heads()
    return ",".join(sorted(heads)) or None


def head_revision(engine: Engine) -> str | None:
    return ",".join(sorted(ScriptDirectory.from_config(alembic_config(engine)).get_heads())) or None


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the models (for developers; review it before committing)."""
    command.revision(alembic_config(engine), message=message, autogenerate=True)
