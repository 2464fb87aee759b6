"""`exchange audit verify` catches any single changed, deleted, inserted or reordered entry, in the database (SQLite
or PostgreSQL, whichever the tests run on) and in an export, and remembers what it verified (trust on first use)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from exchange.audit.models import AuditCheckpoint, AuditEntry, AuditNode
from exchange.cli import main
from exchange.protocol import merkle
from exchange.protocol.checkpoint import NoteVerifier
from exchange.protocol.encoding import b64url, b64url_decode
from tests.audit.conftest import engine_of, fill, rewind, stored_entries, stored_leaves
from tests.conftest import AgencyClient, returnee_body

FIRST_BAD = re.compile(r"first bad index (\d+)(?: \(somewhere in (\d+)\.\.(\d+)\))?")


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def app(file_app: Flask) -> Flask:
    """The CLI signs checkpoints with the same keys as the app: a file key store both open."""
    return file_app


@pytest.fixture
def cli_env(app: Flask, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The CLI's app on the test database, with a file key store of its own (it signs the checkpoints)."""
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", database_url)
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", app.config["KEYS_DIR"])
    monkeypatch.setenv("EXCHANGE_OFFICER", "TJ-AUD-007")
    yield


@pytest.fixture
def populated(app: Flask, cli_env: None, interior: AgencyClient, border: AgencyClient) -> list[int]:
    """40 entries (real calls and synthetic ones) with checkpoints at 10, 20, 30 and 40; returns their sizes."""
    returnee = interior.post("/v1/returnees", json=returnee_body()).get_json()
    border.get(f"/v1/returnees/{returnee['id']}")
    fill(app, 8, start=2)
    sizes = []
    for size in (10, 20, 30, 40):
        fill(app, size - len(stored_leaves(app)), start=len(stored_leaves(app)))
        code, output = run("audit", "checkpoint")
        assert code == 0, output
        sizes.append(int(output.splitlines()[1]))
    assert sizes == [10, 20, 30, 40]
    return sizes


def verify(state: Path, *args: str) -> tuple[int, str]:
    return run("audit", "verify", "--state", str(state), *args)


def first_bad(output: str) -> tuple[int, ...]:
    match = FIRST_BAD.search(output)
    assert match, output
    return tuple(int(g) for g in match.groups() if g is not None)


def session_of(app: Flask) -> Session:
    return Session(engine_of(app))


def leaf_at(session: Session, index: int) -> bytes:
    leaf: bytes = session.scalars(select(AuditEntry.leaf).where(AuditEntry.idx == index)).one()
    return leaf


def forged(leaf: bytes, **changes: Any) -> bytes:
    entry = json.loads(leaf)
    entry.update(changes)
    return json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# ---- tampering with the database -------------------------------------------------------------------------------------


def change(session: Session) -> None:
    session.execute(update(AuditEntry).where(AuditEntry.idx == 25).values(
        leaf=forged(leaf_at(session, 25), agency="prosecutor")))


def delete_row(session: Session) -> None:
    session.execute(delete(AuditEntry).where(AuditEntry.idx == 25))


def insert_row(session: Session) -> None:
    fake = forged(leaf_at(session, 24), index=25, request_id="f" * 32)
    # Make room at 25 (in two steps: a primary key is checked row by row), then slip the forged entry in.
    session.execute(update(AuditEntry).where(AuditEntry.idx >= 25).values(idx=AuditEntry.idx + 1_000_000))
    session.execute(update(AuditEntry).where(AuditEntry.idx >= 1_000_000).values(idx=AuditEntry.idx - 999_999))
    session.execute(AuditEntry.__table__.insert().values(
        idx=25, leaf=fake, time=stored_time(session, 24), action="consult", outcome="success", agency="border"))


def reorder(session: Session) -> None:
    first, second = leaf_at(session, 25), leaf_at(session, 26)
    session.execute(update(AuditEntry).where(AuditEntry.idx == 25).values(leaf=second))
    session.execute(update(AuditEntry).where(AuditEntry.idx == 26).values(leaf=first))


def stored_time(session: Session, index: int) -> Any:
    return session.scalars(select(AuditEntry.time).where(AuditEntry.idx == index)).one()


@pytest.mark.parametrize("tamper", [change, delete_row, insert_row, reorder], ids=lambda f: f.__name__)
def test_verify_names_the_first_bad_row_in_the_database(
    app: Flask, populated: list[int], tmp_path: Path, tamper: Callable[[Session], None]
) -> None:
    state = tmp_path / "state.json"
    code, output = verify(state)
    assert code == 0, output
    assert "verified 40 entries" in output and "first use" in output
    with session_of(app) as session:
        tamper(session)
        session.commit()
    code, output = verify(state)
    assert code == 1, output
    assert first_bad(output) == (25,), output
    code, output = verify(tmp_path / "fresh.json")  # without the state, too
    assert code == 1 and first_bad(output) == (25,), output


def test_a_row_rewritten_with_its_stored_hash_is_caught_by_the_signed_roots(
    app: Flask, populated: list[int], tmp_path: Path
) -> None:
    """The tamperer also rewrites the leaf hash in the tree: only the signed checkpoints can tell, and they pin
    the first bad index down to the entries between two of them."""
    with session_of(app) as session:
        fake = forged(leaf_at(session, 25), outcome="failure")
        session.execute(update(AuditEntry).where(AuditEntry.idx == 25).values(leaf=fake))
        session.execute(update(AuditNode).where(AuditNode.level == 0, AuditNode.idx == 25).values(
            hash=merkle.leaf_hash(fake)))
        session.commit()
    code, output = verify(tmp_path / "state.json")
    assert code == 1, output
    assert first_bad(output) == (20, 20, 29), output


def test_the_strict_mode_checks_every_entry_is_canonical(app: Flask, populated: list[int], tmp_path: Path) -> None:
    assert verify(tmp_path / "state.json", "--strict")[0] == 0
    with session_of(app) as session:
        reordered = dict(reversed(json.loads(leaf_at(session, 12)).items()))
        loose = json.dumps(reordered, separators=(",", ":")).encode()
        session.execute(update(AuditEntry).where(AuditEntry.idx == 12).values(leaf=loose))
        session.execute(update(AuditNode).where(AuditNode.level == 0, AuditNode.idx == 12).values(
            hash=merkle.leaf_hash(loose)))
        session.commit()
    code, output = verify(tmp_path / "state.json", "--strict")
    assert code == 1 and first_bad(output) == (12,) and "canonical" in output, output


# ---- trust on first use ---------------------------------------------------------------------------------------------


def test_the_state_catches_a_rolled_back_or_forked_log(app: Flask, populated: list[int], tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert verify(state)[0] == 0
    saved = json.loads(state.read_text())
    assert (saved["origin"], saved["size"]) == ("exchange.local/audit", 40)
    assert saved["key"].startswith("exchange.local/audit+")
    assert state.stat().st_mode & 0o777 == 0o600
    # The log grows: the next run checks it still extends what was verified.
    fill(app, 5, start=len(stored_leaves(app)))
    assert run("audit", "checkpoint")[0] == 0
    code, output = verify(state)
    assert code == 0 and "consistent with the 40 entries verified" in output, output
    grown = json.loads(state.read_text())["size"]
    # Rolled back: the checkpoint is smaller than what was verified.
    rewind(app, 30)
    code, output = verify(state)
    assert code == 1 and "shrank" in output and first_bad(output) == (30, 30, grown - 1), output
    # Forked: a different history from 30 on, grown past the verified size and signed again.
    fill(app, 25, start=1000)
    assert run("audit", "checkpoint")[0] == 0
    assert verify(tmp_path / "other-auditor.json")[0] == 0, "the fork is consistent in itself"
    code, output = verify(state)
    assert code == 1 and "verified before" in output and first_bad(output) == (30, 30, grown - 1), output


# ---- exports ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def exported(populated: list[int], tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "audit.jsonl"
    code, output = run("audit", "export", "--output", str(path))
    assert code == 0, output
    code, key = run("audit", "key")
    assert code == 0
    return path, key.strip()


def rewrite_lines(path: Path, edit: Callable[[list[str]], None]) -> None:
    lines = path.read_text().splitlines()
    body = lines[1:]
    edit(body)
    path.write_text("\n".join([lines[0], *body]) + "\n")


def change_line(lines: list[str]) -> None:
    entry = json.loads(lines[25])
    leaf = forged(b64url_decode(entry["leaf"]), purpose="curiosity")
    lines[25] = json.dumps({**entry, "leaf": b64url(leaf)})


def relayout(lines: list[str]) -> None:
    """The same entries in other valid JSON: spaces (line 3), the first character of a leaf escaped (line 4)."""
    lines[3] = json.dumps(json.loads(lines[3])) + " "
    head, leaf = lines[4].split('"leaf":"', 1)
    lines[4] = f'{head}"leaf":"\\u{ord(leaf[0]):04x}{leaf[1:]}'


@pytest.mark.parametrize("edit", [
    change_line,
    lambda lines: lines.pop(25),
    lambda lines: lines.insert(25, lines[24]),
    lambda lines: lines.insert(25, lines.pop(26)),
    lambda lines: lines.__setitem__(25, lines[25].replace('"leaf":"', '"leaf":"+', 1)),  # not base64url
    lambda lines: lines.__setitem__(25, lines[25].replace('"leaf":"', '"leaf":"A', 1)),  # not canonical
], ids=["change", "delete", "insert", "reorder", "garbled", "uneven"])
def test_verify_names_the_first_bad_line_of_an_export(
    exported: tuple[Path, str], tmp_path: Path, edit: Callable[[list[str]], None]
) -> None:
    path, key = exported
    state = tmp_path / "export-state.json"
    code, output = verify(state, "--export", str(path), "--key", key)
    assert code == 0 and "verified 41 entries" in output, output  # 40, and the export's own read
    rewrite_lines(path, relayout)
    code, output = verify(state, "--export", str(path))  # a line in another JSON layout is read as well
    assert code == 0, output
    rewrite_lines(path, edit)
    code, output = verify(state, "--export", str(path))  # the key comes from the state now
    assert code == 1 and first_bad(output) == (25,), output


def test_an_export_needs_a_trusted_key_and_the_right_one(exported: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = exported
    code, output = verify(tmp_path / "s.json", "--export", str(path))
    assert code == 2 and "no trusted key" in output
    other = "exchange.local/audit+" + "0" * 8 + "+AUynseU89FQ/mgWSctyT9gIxih9hsu8DgwX3WRB36EH5"
    code, output = verify(tmp_path / "s.json", "--export", str(path), "--key", other)
    assert code == 2 and "does not match" in output
    stranger = NoteVerifier(name="exchange.local/audit", public_key=bytes(32)).vkey
    code, output = verify(tmp_path / "s.json", "--export", str(path), "--key", stranger)
    assert code == 1 and "not signed by any trusted key" in output


# ---- the other commands ----------------------------------------------------------------------------------------------


def test_tail_search_and_key_read_the_log_and_are_audited(app: Flask, populated: list[int]) -> None:
    code, output = run("audit", "tail", "-n", "3")
    assert code == 0 and "last 3 of 41 entries" in output and "38" in output and "40" in output, output
    code, output = run("audit", "search", "--agency", "border", "--limit", "5")
    assert code == 0 and "5 matching entries (more: --after" in output, output
    code, output = run("audit", "search", "--outcome", "failure")
    assert code == 0 and "0 matching entries" in output, output
    entries = stored_entries(app)
    assert [(e["action"], e["agency"], e["officer"], e["path"]) for e in entries[-3:]] == [
        ("audit.read", "exchange", "TJ-AUD-007", "exchange audit tail"),
        ("audit.read", "exchange", "TJ-AUD-007", "exchange audit search"),
        ("audit.read", "exchange", "TJ-AUD-007", "exchange audit search"),
    ]


def test_checkpoint_every_keeps_publishing_until_interrupted(
    app: Flask, cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fill(app, 3)
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt
        fill(app, 1, start=100 + len(naps))

    monkeypatch.setattr("exchange.audit.cli.time.sleep", sleep)
    code, output = run("audit", "checkpoint", "--every")
    assert code == 0 and naps == [10.0, 10.0]
    sizes = [int(line) for line in output.splitlines() if line.isdigit()]
    assert sizes == [3, 4]
    with session_of(app) as session:
        assert session.scalars(select(AuditCheckpoint.size).order_by(AuditCheckpoint.size)).all() == [3, 4]
        assert session.execute(text("SELECT checkpoint_size FROM audit_head")).scalar_one() == 4


def test_verify_reports_entries_still_queued(
    app: Flask, populated: list[int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry committed with its call but not sequenced yet is not in the tree: the verifier's own recorded read
    sequences it first; if that read cannot be recorded, the verifier says the entry is waiting."""
    from exchange.audit import recorder
    from exchange.audit.services import AuditLog
    from exchange.protocol.audit_errors import AuditUnavailable
    from tests.audit.conftest import event

    def queue_one() -> None:
        with session_of(app) as session:
            AuditLog(session=session).enqueue([event(99)])
            session.commit()

    queue_one()
    code, output = verify(tmp_path / "state.json")
    assert code == 0, output
    assert "verified 40 entries" in output and "2 newer entries are not in a checkpoint" in output, output
    assert "queued" not in output

    queue_one()

    def unavailable(*args: Any, **kwargs: Any) -> None:
        raise AuditUnavailable()

    monkeypatch.setattr(recorder, "record_event", unavailable)
    code, output = verify(tmp_path / "state.json")
    assert code == 0, output
    assert "could not be recorded" in output and "1 entries are queued, not sequenced yet" in output, output


@pytest.mark.parametrize("command", [("audit", "verify"), ("audit", "tail"), ("audit", "search"), ("audit", "export")])
def test_reading_a_database_that_does_not_exist_is_an_error_and_creates_nothing(
    app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    missing = folder / "mistyped.db"
    monkeypatch.setenv("EXCHANGE_DATABASE_URL", f"sqlite:///{missing}")
    monkeypatch.setenv("EXCHANGE_KEYS_DIR", app.config["KEYS_DIR"])
    code, output = run(*command)
    assert code == 2 and f"no database at {missing}" in output, output
    assert list(folder.iterdir()) == []  # no empty database left behind to "verify" next time
