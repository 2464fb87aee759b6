"""The auditor's console without a browser: what it verifies, what it answers, what it flags, what it reports."""

from __future__ import annotations

import html
import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nacl.signing
from click.testing import CliRunner

from exchange.cli import main
from exchange.console.cosign import COSIGNATURE_V1, WitnessKey
from exchange.console.rules import RuleConfig
from exchange.protocol.checkpoint import SIGNATURE_PREFIX, b64std
from exchange.protocol.encoding import b64url, b64url_decode
from tests.console.builders import LogKey, leaves_of, write_export
from tests.console.conftest import Loaded, sample_events

Load = Callable[..., Loaded]


def indices(answer: dict[str, object]) -> list[int]:
    items = answer["items"]
    assert isinstance(items, list)
    return [item["index"] for item in items]


# ---- the badge ------------------------------------------------------------------------------------------------------


def test_the_badge_states_what_was_checked_and_up_to_which_checkpoint(load: Load, export: Path) -> None:
    console = load(export)
    status = console.get("/api/status").get_json()
    assert status["phase"] == "done" and status["done"] == status["total"] == 102
    badge = status["badge"]
    assert badge["ok"] is True and badge["size"] == 102 and badge["origin"] == "exchange.test/audit"
    assert badge["key"] == console.key.vkey and badge["checkpoint"].startswith("exchange.test/audit\n102\n")
    assert badge["checked_at"] and badge["source"] == f"export {export}"
    assert any("signature verifies" in c for c in badge["checks"])
    assert any("first use" in c for c in badge["checks"])
    assert badge["cosignatures"] == {"found": 0, "verified": [], "failed": [], "unknown": [], "trusted_witnesses": []}
    # the next run is checked against what this one verified (the state file, shared with `exchange audit verify`)
    again = load(export, keys=()).get("/api/status").get_json()["badge"]
    assert again["ok"] and again["consistency"]["size"] == 102


def tampered(export: Path, index: int, tmp_path: Path) -> Path:
    lines = export.read_text(encoding="utf-8").splitlines(keepends=True)
    line = json.loads(lines[index + 1])
    leaf = b64url_decode(line["leaf"]).replace(b'"outcome":"success"', b'"outcome":"failure"')
    line["leaf"] = b64url(leaf)
    lines[index + 1] = json.dumps(line, separators=(",", ":")) + "\n"
    path = tmp_path / "tampered.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def test_a_tampered_export_fails_naming_the_first_bad_index(load: Load, export: Path, tmp_path: Path) -> None:
    console = load(tampered(export, 37, tmp_path))
    badge = console.get("/api/status").get_json()["badge"]
    assert badge["ok"] is False and badge["first_bad_index"] == 37
    assert badge["reason"].startswith("first bad index 37:")
    report = console.get("/report?kind=record&value=r1")
    assert report.status_code == 409 and report.get_json()["code"] == "report_unavailable"
    assert not console.state.exists()  # nothing is remembered from a log that did not verify


def test_a_checkpoint_signed_by_another_key_fails(load: Load, export: Path) -> None:
    other = LogKey(seed=b"\x09" * 32)
    badge = load(export, keys=(other.vkey,)).get("/api/status").get_json()["badge"]
    assert badge["ok"] is False and "not signed by any trusted key" in badge["reason"]


def test_an_export_of_a_rewritten_history_fails_against_the_kept_state(load: Load, tmp_path: Path,
                                                                      log_key: LogKey) -> None:
    events = sample_events()
    first = tmp_path / "first.jsonl"
    write_export(first, leaves_of(events[:50]), log_key)
    assert load(first).get("/api/status").get_json()["badge"]["ok"]
    forked = leaves_of(events)
    forked[10] = forked[11].replace(b'"index":11', b'"index":10')  # rewritten, hashes and signature made anew
    second = tmp_path / "second.jsonl"
    write_export(second, forked, log_key)
    badge = load(second).get("/api/status").get_json()["badge"]
    assert badge["ok"] is False and "verified before" in badge["reason"]


def test_witness_cosignatures_are_counted_and_checked_once_they_exist(load: Load, tmp_path: Path,
                                                                    log_key: LogKey) -> None:
    leaves = leaves_of(sample_events())
    from exchange.protocol import merkle

    note = log_key.sign(len(leaves), merkle.root_of(merkle.leaf_hash(leaf) for leaf in leaves))
    text = note[: note.rfind("\n\n") + 1]
    witness = nacl.signing.SigningKey(b"\x05" * 32)
    key = WitnessKey(name="witness.example", kind=COSIGNATURE_V1, public_key=bytes(witness.verify_key))
    timestamp = 1_772_000_000
    signature = witness.sign(f"cosignature/v1\ntime {timestamp}\n{text}".encode()).signature
    line = f"{SIGNATURE_PREFIX}witness.example {b64std(key.key_id + timestamp.to_bytes(8, 'big') + signature)}\n"
    stranger = f"{SIGNATURE_PREFIX}other.witness {b64std(b'1234' + bytes(72))}\n"
    path = tmp_path / "cosigned.jsonl"
    write_export(path, leaves, log_key, note=note + line + stranger)
    vkey = f"witness.example+{key.key_id.hex()}+{b64std(bytes([COSIGNATURE_V1]) + key.public_key)}"
    badge = load(path, witnesses=(vkey,)).get("/api/status").get_json()["badge"]
    assert badge["ok"] is True
    assert badge["cosignatures"]["found"] == 2
    assert badge["cosignatures"]["verified"] == [{"name": "witness.example", "timestamp": timestamp}]
    assert badge["cosignatures"]["unknown"] == ["other.witness"]


# ---- search, histories --------------------------------------------------------------------------------------------


def test_search_by_every_field_and_time_range_paged(load: Load, export: Path) -> None:
    console = load(export)

    def search(query: str) -> list[int]:
        response = console.get(f"/api/search?{query}")
        assert response.status_code == 200, response.get_json()
        return indices(response.get_json())

    assert search("agency=prosecutor") == [62, 61, 60]
    assert search("client_id=pros-1&case_ref=KR-2026-17") == [61, 60]
    assert search("officer=TJ-SEC-0001") == [76]
    assert search("purpose=amnesty-review&action=disclose") == [62, 61, 60]
    assert search("outcome=failure") == list(range(75, 63, -1))
    assert search("record_id=r2&agency=prosecutor") == [61]
    assert search("from=2026-03-02T09:00:00Z&to=2026-03-02T09:10:00Z") == [1, 0]
    assert search("from=2026-03-02T09:00:00Z&to=2026-03-02T09:10:01Z&client_id=nobody") == []
    first = console.get("/api/search?agency=border&limit=10").get_json()
    assert indices(first) == list(range(101, 91, -1)) and first["next_before"] == 92
    second = console.get("/api/search?agency=border&limit=10&before=92").get_json()
    assert indices(second) == list(range(91, 81, -1))
    bad = console.get("/api/search?from=yesterday")
    assert bad.status_code == 422 and bad.get_json()["code"] == "invalid_query"


def test_a_returnees_history_a_clients_activity_and_a_keys_operations(load: Load, export: Path) -> None:
    console = load(export)
    history = console.get("/api/history/r2").get_json()["items"]
    assert [e["index"] for e in history] == [61, 56, 47, 38, 29, 20, 11, 2]
    assert history[0]["client_id"] == "pros-1"
    assert {k: history[0][k] for k in ("agency", "officer", "purpose", "case_ref", "recipient", "action")} == {
        "agency": "prosecutor", "officer": "TJ-PROS-007", "purpose": "amnesty-review", "case_ref": "KR-2026-17",
        "recipient": "prosecutor", "action": "disclose"}
    assert indices(console.get("/api/clients/pros-1").get_json()) == [62, 61, 60]
    keys = console.get("/api/keys").get_json()["items"]
    assert keys == [{"id": "audit-2026-03", "operations": 1, "first": 76, "last": 76}]
    assert indices(console.get("/api/keys/audit-2026-03").get_json()) == [76]
    entry = console.get("/api/entries/76").get_json()
    assert json.loads(entry["leaf"])["action"] == "key.rotate"
    missing = console.get("/api/entries/5000")
    assert missing.status_code == 404 and missing.get_json()["code"] == "entry_not_found"


def test_nothing_is_answered_before_the_log_is_verified(load: Load, export: Path) -> None:
    console = load(export, start=False)
    response = console.get("/api/search?agency=border")
    assert response.status_code == 503 and response.get_json()["code"] == "console_loading"
    assert console.get("/api/status").get_json()["phase"] == "starting"


# ---- flags --------------------------------------------------------------------------------------------------------


def test_the_rules_flag_and_explain_themselves(load: Load, export: Path) -> None:
    console = load(export)
    flags = {f["key"]: f for f in console.get("/api/flags").get_json()["items"]}
    bulk = [f for f in flags.values() if f["rule"] == "bulk"]
    assert [f["subject"] for f in bulk] == ["border-7"]  # the routine border reads (9 returnees) are not
    assert bulk[0]["count"] == 25 and "20 distinct records within 60 minutes" in bulk[0]["explanation"]
    detail = console.get(f"/api/flags/{bulk[0]['key']}").get_json()
    assert [e["index"] for e in detail["entries"]] == list(range(77, 102))
    assert indices(console.get("/api/search?" + "&".join(f"{k}={v}" for k, v in bulk[0]["search"].items()))
                   .get_json()) == list(range(101, 76, -1))
    assert flags["no-case:pros-1:2026-03-02"]["count"] == 1
    assert flags["hours:border-1:2026-03-02"]["count"] == 1  # 21:05
    denials = sorted(f["subject"] for f in flags.values() if f["rule"] == "denials")
    assert denials == ["client border-2", "source 203.0.113.9"]
    assert flags["key-op:76"]["subject"] == "audit-2026-03"
    assert len(flags) == 6
    only = console.get("/api/flags?rule=denials").get_json()
    assert [f["rule"] for f in only["items"]] == ["denials", "denials"]
    assert only["counts"] == {"bulk": 1, "no-case": 1, "hours": 1, "denials": 2, "key-op": 1}


def test_thresholds_and_working_hours_are_configurable(load: Load, export: Path) -> None:
    rules = RuleConfig(bulk_records=26, work_start=0, work_end=24, denial_burst=13)
    flags = load(export, rules=rules).get("/api/flags").get_json()["items"]
    assert sorted(f["rule"] for f in flags) == ["key-op", "no-case"]


def test_working_hours_are_read_in_the_configured_timezone(load: Load, export: Path) -> None:
    rules = RuleConfig(work_start=8, work_end=19, timezone="Asia/Dushanbe")  # UTC+5
    flags = {f["key"]: f for f in load(export, rules=rules).get("/api/flags?rule=hours").get_json()["items"]}
    # 21:05 UTC is 02:05 in Dushanbe (the next day); the prosecutor's reads from 14:01 UTC and the bulk read from
    # 17:00 UTC are after 19:00 there; refused calls read or change nothing (the denials rule watches them)
    assert set(flags) == {"hours:border-1:2026-03-03", "hours:pros-1:2026-03-02", "hours:border-7:2026-03-02"}
    assert "08:00-19:00 Mon,Tue,Wed,Thu,Fri (Asia/Dushanbe)" in flags["hours:pros-1:2026-03-02"]["explanation"]
    assert RuleConfig.parse_days("Sat-Mon") == frozenset({5, 6, 0})
    assert RuleConfig.parse_hours("07:00-19:00") == (7, 19)


def test_a_flag_is_marked_reviewed_with_a_note_kept_across_loads(load: Load, export: Path) -> None:
    console = load(export)
    key = "key-op:76"
    refused = console.client.post(f"/api/flags/{key}/review", json={"note": "planned rotation"})
    assert refused.status_code == 403 and refused.get_json()["code"] == "foreign_request"
    done = console.client.post(f"/api/flags/{key}/review", json={"note": "planned rotation, ticket 42"},
                               headers={"X-Console": "1"})
    assert done.status_code == 200
    again = load(export)
    review = next(f for f in again.get("/api/flags").get_json()["items"] if f["key"] == key)["review"]
    assert review["note"] == "planned rotation, ticket 42" and review["reviewed_at"]
    unknown = again.client.post("/api/flags/nope/review", json={"note": ""}, headers={"X-Console": "1"})
    assert unknown.status_code == 404 and unknown.get_json()["code"] == "flag_not_found"


def test_the_index_and_the_review_notes_are_readable_by_the_auditor_only(load: Load, export: Path,
                                                                         tmp_path: Path) -> None:
    umask = os.umask(0o022)  # what most machines give new files: readable by all
    try:
        console = load(export)
        assert console.client.post("/api/flags/key-op:76/review", json={"note": "seen"},
                                   headers={"X-Console": "1"}).status_code == 200
    finally:
        os.umask(umask)
    files = sorted(tmp_path.glob("*.sqlite*"))
    assert {f.name for f in files} >= {"reviews.sqlite", "index-1.sqlite"}
    assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: 0o600 for f in files}


def test_only_its_own_page_on_loopback_is_answered(load: Load, export: Path) -> None:
    console = load(export)
    response = console.client.get("/api/status", headers={"Host": "evil.example:8999"})
    assert response.status_code == 403 and response.get_json()["code"] == "foreign_request"
    page = console.get("/")
    assert page.status_code == 200 and b"/static/app.js" in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert re.findall(rb'(?:src|href)="(https?:)?//', page.data) == []  # no external asset
    assert console.get("/static/app.js").status_code == 200
    assert console.get("/static/../web.py").status_code == 404


# ---- charts and the report ------------------------------------------------------------------------------------------


def test_the_charts_are_svg_drawn_from_the_verified_entries(load: Load, export: Path) -> None:
    charts = load(export).get("/api/charts").get_json()
    assert set(charts) == {"agency_day", "denials_day", "purpose", "heat"}
    assert all(svg.startswith("<svg") for svg in charts.values())
    assert "2026-03-02 border: 98" in charts["agency_day"] and "2026-03-02 denials: 12" in charts["denials_day"]
    assert "border-screening: 98" in charts["purpose"] and "Mon 09:00 UTC: 12" in charts["heat"]


def test_the_report_proves_each_entry_and_a_third_party_can_re_verify_it(load: Load, export: Path,
                                                                      tmp_path: Path) -> None:
    console = load(export)
    response = console.get("/report?kind=record&value=r2&from=2026-03-02T10:00:00Z&download=1")
    assert response.status_code == 200
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    evidence = json.loads(re.search(r'<script type="application/json" id="evidence">(.*?)</script>', text,
                                    re.S)[1])  # type: ignore[index]
    assert [e["index"] for e in evidence["entries"]] == [20, 29, 38, 47, 56, 61]  # 11 was at 09:55
    assert evidence["size"] == 102 and evidence["key"] == console.key.vkey
    script = html.unescape(re.search(r"<pre>(# verify.py.*?)</pre>", text, re.S)[1])  # type: ignore[index]
    (tmp_path / "verify.py").write_text(script, encoding="utf-8")
    (tmp_path / "evidence.json").write_text(json.dumps(evidence), encoding="utf-8")

    def verify() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(tmp_path / "verify.py"), str(tmp_path / "evidence.json"),
                               console.key.vkey], capture_output=True, text=True, check=False)

    done = verify()
    assert done.returncode == 0 and done.stdout.startswith("OK: 6 entries"), done.stderr
    forged = evidence["entries"][2]["leaf"].replace("TJ-BORDER-001", "TJ-BORDER-002")
    evidence["entries"][2]["leaf"] = forged
    (tmp_path / "evidence.json").write_text(json.dumps(evidence), encoding="utf-8")
    assert verify().returncode != 0
    client = console.get("/report?kind=client&value=pros-1").get_data(as_text=True)
    assert "Activity of client pros-1" in client and "KR-2026-17" in client
    bad = console.get("/report?kind=officer&value=x")
    assert bad.status_code == 422 and bad.get_json()["code"] == "invalid_query"


# ---- the command --------------------------------------------------------------------------------------------------


def test_the_command_needs_one_source_and_valid_options(tmp_path: Path, export: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "console", "--no-browser"])
    assert result.exit_code == 2 and "give one of --export FILE or --server URL" in result.output
    result = runner.invoke(main, ["audit", "console", "--export", str(export), "--working-hours", "19-7"])
    assert result.exit_code == 2 and "working hours" in result.output
    result = runner.invoke(main, ["audit", "console", "--server", "http://127.0.0.1:1", "--no-browser"])
    assert result.exit_code == 2 and "--client-id and --client-keys" in result.output
