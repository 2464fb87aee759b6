"""The court-ready report: every entry about one record (a returnee's access history) or one client over a time range,
each with its inclusion proof against the signed checkpoint the console verified, and how a third party re-verifies
it with nothing but the published key, this document and a few lines of Python. Print-ready HTML (the browser's
"Print to PDF" makes the PDF); the evidence is also embedded as JSON for the re-verification script.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from exchange.console.store import Index, Query
from exchange.protocol import merkle
from exchange.protocol.checkpoint import NoteVerifier, verify_checkpoint

MAX_REPORT_ENTRIES = 10_000


class ReportError(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class Subject:
    kind: str  # "record" or "client"
    value: str
    time_from: int | None = None
    time_to: int | None = None

    def title(self) -> str:
        return (f"Access history of record {self.value}" if self.kind == "record"
                else f"Activity of client {self.value}")


def _b64(data: bytes) -> str:
    import base64
    return base64.b64encode(data).decode("ascii")


def evidence(index: Index, subject: Subject, *, checkpoint_note: str, key: str) -> dict[str, Any]:
    """The entries with their proofs, each proof checked here before it is written down (fail closed)."""
    verifier = NoteVerifier.from_vkey(key)
    signed = verify_checkpoint(checkpoint_note, [verifier], origin=verifier.name)
    items: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        page = index.search(Query(filters={"client_id": subject.value} if subject.kind == "client" else {},
                                  record_id=subject.value if subject.kind == "record" else None,
                                  time_from=subject.time_from, time_to=subject.time_to, before=before, limit=500))
        items += page["items"]
        before = page["next_before"]
        if before is None:
            break
        if len(items) >= MAX_REPORT_ENTRIES:
            raise ReportError(f"more than {MAX_REPORT_ENTRIES} entries: narrow the time range")
    items.reverse()
    leaves = index.leaves([e["index"] for e in items])
    proven = []
    for entry in items:
        leaf, leaf_hash = leaves[entry["index"]]
        hashes = index.inclusion_proof(entry["index"], signed.size)
        merkle.verify_inclusion(merkle.InclusionProof(index=entry["index"], size=signed.size, hashes=hashes),
                                leaf_hash=merkle.leaf_hash(leaf), root=signed.root)
        proven.append({"index": entry["index"], "leaf": leaf.decode("utf-8"), "leaf_hash": _b64(leaf_hash),
                       "proof": [_b64(h) for h in hashes], "entry": entry})
    return {"subject": {"kind": subject.kind, "value": subject.value, "from": _iso(subject.time_from),
                        "to": _iso(subject.time_to)},
            "checkpoint": checkpoint_note, "key": key, "size": signed.size, "root": _b64(signed.root),
            "entries": proven}


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


VERIFY_SCRIPT = r'''# verify.py: python3 verify.py evidence.json 'VERIFIER KEY'   (needs PyNaCl: pip install pynacl)
import base64, hashlib, json, sys
from nacl.signing import VerifyKey

evidence, vkey = json.load(open(sys.argv[1], encoding="utf-8")), sys.argv[2]
name, key_id_hex, blob = vkey.split("+", 2)
raw = base64.b64decode(blob)
assert raw[0] == 1 and len(raw) == 33, "an Ed25519 verifier key"
public = raw[1:]
key_id = hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]
assert key_id.hex() == key_id_hex, "the key ID matches the key"
note = evidence["checkpoint"]
text, signatures = note[:note.rfind("\n\n") + 1], note[note.rfind("\n\n") + 2:].splitlines()
signed = False
for line in signatures:                                   # "— <name> <base64(key ID || signature)>"
    signer, sig = line[2:].split(" ")
    sig = base64.b64decode(sig)
    if signer == name and sig[:4] == key_id:
        VerifyKey(public).verify(text.encode(), sig[4:])  # raises if the signature is wrong
        signed = True
assert signed, "the checkpoint is signed by the published key"
origin, size, root = text.splitlines()[:3]
size, root = int(size), base64.b64decode(root)

def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()

for entry in evidence["entries"]:                         # RFC 9162 section 2.1.3.2
    leaf = entry["leaf"].encode("utf-8")
    assert json.loads(leaf)["index"] == entry["index"]
    fn, sn, r = entry["index"], size - 1, hashlib.sha256(b"\x00" + leaf).digest()
    for p in map(base64.b64decode, entry["proof"]):
        assert sn > 0
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0 and r == root, f"entry {entry['index']} is not in the signed log"
print(f"OK: {len(evidence['entries'])} entries are in the log {origin} of {size} entries signed by {vkey}")
'''

COLUMNS = (("index", "#"), ("time", "time (UTC)"), ("action", "action"), ("outcome", "outcome"),
           ("agency", "agency"), ("client_id", "client"), ("officer", "officer"), ("purpose", "purpose"),
           ("case_ref", "case reference"), ("recipient", "recipient"), ("record_ids", "records"), ("method", "method"),
           ("path", "path"))
LONG = frozenset({"record_ids", "path"})

STYLE = """
body { font: 11pt/1.4 Georgia, 'Times New Roman', serif; margin: 2em auto; max-width: 60em; color: #000; }
h1 { font-size: 18pt; margin-bottom: 0.2em; } h2 { font-size: 13pt; border-bottom: 1px solid #000; margin-top: 2em; }
table { border-collapse: collapse; width: 100%; font: 8.5pt/1.3 'DejaVu Sans', Arial, sans-serif; }
th, td { border: 1px solid #999; padding: 2px 4px; text-align: left; vertical-align: top; overflow-wrap: break-word; }
td.long { word-break: break-all; min-width: 8em; }
pre, code { font: 8pt/1.3 'DejaVu Sans Mono', monospace; white-space: pre-wrap; word-break: break-all; }
.proof { page-break-inside: avoid; border-top: 1px dotted #999; padding-top: 0.3em; }
.meta td:first-child { width: 12em; font-weight: bold; }
@media print { body { margin: 0; max-width: none; } h2 { page-break-after: avoid; } .noprint { display: none; } }
"""


def _cell(column: str, value: object) -> str:
    if column == "time" and isinstance(value, str):
        value = value.replace("T", " ")
    text = " ".join(map(str, value)) if isinstance(value, list) else "" if value is None else str(value)
    return f'<td class="long">{escape(text)}</td>' if column in LONG else f"<td>{escape(text)}</td>"


def render(data: dict[str, Any], subject: Subject, *, badge: dict[str, Any]) -> str:
    entries = data["entries"]
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    period = f"{data['subject']['from'] or 'the beginning of the log'} to {data['subject']['to'] or 'the checkpoint'}"
    rows = "".join("<tr>" + "".join(_cell(c, e["entry"].get(c)) for c, _ in COLUMNS) + "</tr>" for e in entries)
    proofs = "".join(
        f'<div class="proof"><b>Entry {e["index"]}</b> &middot; leaf hash <code>{escape(e["leaf_hash"])}</code>'
        f'<pre>{escape(e["leaf"])}</pre>inclusion proof ({len(e["proof"])} hashes, bottom up): '
        f'<code>{escape(" ".join(e["proof"]))}</code></div>' for e in entries)
    cosigned = badge.get("cosignatures") or {}
    witnessed = (f"{len(cosigned.get('verified', []))} of {cosigned.get('found', 0)} cosignature(s) verified with "
                 "trusted witness keys" if cosigned.get("found") else "the checkpoint carries no witness cosignature")
    evidence_json = json.dumps({k: data[k] for k in ("checkpoint", "key", "size", "root")} | {
        "subject": data["subject"],
        "entries": [{"index": e["index"], "leaf": e["leaf"], "proof": e["proof"]} for e in entries]},
        ensure_ascii=True).replace("</", "<\\/")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(subject.title())}</title>
<style>{STYLE}</style></head><body>
<h1>{escape(subject.title())}</h1>
<p>Entries of the audit log of the Returnee Exchange from {escape(period)}, with the proof that each is in the log
as signed by the exchange. Generated {escape(now)} by the auditor's console.</p>
<table class="meta">
<tr><td>subject</td><td>{escape(subject.kind)} <code>{escape(subject.value)}</code></td></tr>
<tr><td>period</td><td>{escape(period)}</td></tr>
<tr><td>entries</td><td>{len(entries)}</td></tr>
<tr><td>log</td><td>{escape(badge.get("origin", ""))}: {data["size"]} entries,
root <code>{escape(data["root"])}</code></td></tr>
<tr><td>checkpoint key</td><td><code>{escape(data["key"])}</code></td></tr>
<tr><td>verified</td><td>the whole log ({data["size"]} entries) was verified against this checkpoint on
{escape(str(badge.get("checked_at", "")))} ({escape(str(badge.get("source", "")))}); {escape(witnessed)}</td></tr>
</table>
<h2>1. Entries</h2>
<table><thead><tr>{"".join(f"<th>{escape(t)}</th>" for _, t in COLUMNS)}</tr></thead><tbody>{rows}</tbody></table>
<p>Entries hold identifiers, never names or record content; each entry's exact bytes are in Annex B.</p>
<h2>2. How a third party re-verifies this report</h2>
<ol>
<li>Obtain the exchange's checkpoint key from its operators independently of this document (they print it with
<code>exchange audit key</code>; it is also published in the exchange's JWKS) and compare it with the key above.</li>
<li>Check the signed checkpoint (Annex A): it is a C2SP signed note; its signature line verifies with that key over
the text above the blank line (any C2SP verifier, or step 4).</li>
<li>For each entry (Annex B): its leaf hash is SHA-256(0x00 || the entry's bytes exactly as printed); folding the
inclusion proof into it as RFC 9162 section 2.1.3.2 describes yields the checkpoint's root. An entry altered, added
or removed after the checkpoint was signed cannot produce the root.</li>
<li>Or run the script below on the evidence block (Annex C, saved as <code>evidence.json</code>):
<code>python3 verify.py evidence.json 'KEY'</code>. It prints OK or stops at the first entry that does not verify.</li>
</ol>
<p>That the list is complete (no consultation left out) rests on the auditor's verification of the whole log
against the same checkpoint, stated above; anyone holding an export of the log can repeat it with
<code>exchange audit verify --export FILE --key KEY</code> and search it for the subject.</p>
<pre>{escape(VERIFY_SCRIPT)}</pre>
<h2>Annex A. The signed checkpoint</h2>
<pre>{escape(data["checkpoint"])}</pre>
<h2>Annex B. Entries and inclusion proofs</h2>
{proofs}
<h2>Annex C. Evidence (JSON)</h2>
<pre id="evidence-text">{escape(evidence_json)}</pre>
<script type="application/json" id="evidence">{evidence_json}</script>
</body></html>
"""
