"""Key management (keys.md "Operations"): generate, activate, rotate, retire, revoke, destroy, approve, rewrap, and
rotation by maximum age. Used by the `/v1/keys` API and the `exchange keys` CLI alike.

Registry changes are flushed into the caller's session and committed by its unit of work together with the audit
entry of the operation (fail closed). A new key's private part is written to the store first: if the transaction
then fails, the store holds an unregistered file that nothing uses.

Timing (keys.md "Rotation without downtime"):
- an activation is scheduled `activation_delay` ahead (at least twice the workers' registry cache time), so every
  worker knows the new key before any signs with it; the JWKS lists it as `pending` meanwhile;
- the previous active key retires `overlap` after that (>= token lifetime + envelope lifetime + clock skew), so
  tokens it signed and envelopes sealed to it keep working until they expire.
Revoking or destroying a key needs two different principals (exchange.keys.principal): one security client files
a request, another security client, with other keys, approves it within 15 minutes. The officer ids are recorded
with both halves, never trusted to tell them apart.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from exchange.envelope.models import EnvelopeEvidence, EnvelopeOutcome
from exchange.keys.errors import (
    ApprovalClosed,
    ApprovalExpired,
    ApprovalNotFound,
    InvalidKeyState,
    KeyInUse,
    KeyNotFound,
    OfficerRequired,
    SameOfficer,
    SamePrincipal,
)
from exchange.keys.models import ExchangeKeyRecord, KeyApproval
from exchange.keys.principal import Principal, registered_keys
from exchange.keys.ring import KeyRing, active_kids, registry_row, state_of
from exchange.keys.store import ALL_PURPOSES
from exchange.protocol.clock import TOKEN_LIFETIME
from exchange.protocol.envelope import MAX_LIFETIME as ENVELOPE_MAX_LIFETIME

CLOCK_SKEW = timedelta(seconds=60)
MIN_OVERLAP = timedelta(seconds=TOKEN_LIFETIME + ENVELOPE_MAX_LIFETIME) + CLOCK_SKEW
APPROVAL_WINDOW = timedelta(minutes=15)
DEFAULT_MAX_AGE_DAYS = {"token": 30, "envelope-sign": 90, "envelope-enc": 90, "audit": 365, "storage": 365}
REWRAP_BATCH = 500


@dataclass(frozen=True)
class KeyView:
    """A registry row with its state now, for the API and the CLI."""

    record: ExchangeKeyRecord
    state: str
    private_part: bool  # whether the store still holds it


@dataclass(frozen=True)
class Outcome:
    """What an operation did: the keys it touched, and the approval it filed or executed."""

    keys: tuple[KeyView, ...] = ()
    approval: KeyApproval | None = None
    executed: bool = True


@dataclass(frozen=True)
class RewrapResult:
    storage_kid: str
    key_files: int
    evidence_rows: int


class KeyService:
    def __init__(self, *, session: Session, ring: KeyRing, overlap: timedelta = MIN_OVERLAP,
                 activation_delay: timedelta | None = None) -> None:
        self.session = session
        self.ring = ring
        self.overlap = max(overlap, MIN_OVERLAP)
        # twice the cache time plus a margin: every worker has reloaded the registry before the key signs
        self.activation_delay = activation_delay if activation_delay is not None else timedelta(
            seconds=2 * ring.cache_seconds + 1)

    # ---- reading ------------------------------------------------------------------------------------------------

    def _rows(self) -> list[ExchangeKeyRecord]:
        return list(self.session.scalars(select(ExchangeKeyRecord).order_by(ExchangeKeyRecord.created_at)))

    def _view(self, row: ExchangeKeyRecord, rows: list[ExchangeKeyRecord] | None = None) -> KeyView:
        now = self.ring.now()
        active = active_kids(rows if rows is not None else self._rows(), now)
        return KeyView(record=row, state=state_of(row, now, active), private_part=self.ring.store.has(row.kid))

    def list_keys(self, *, purpose: str | None = None, state: str | None = None) -> list[KeyView]:
        rows = self._rows()
        views = [self._view(r, rows) for r in rows if purpose in (None, r.purpose)]
        return [v for v in views if state in (None, v.state)]

    def get(self, kid: str) -> ExchangeKeyRecord:
        row = self.session.scalar(select(ExchangeKeyRecord).where(ExchangeKeyRecord.kid == kid))
        if row is None:
            raise KeyNotFound(f"No exchange key {kid}.")
        return row

    def show(self, kid: str) -> KeyView:
        return self._view(self.get(kid))

    def approvals(self, *, status: str | None = None) -> list[KeyApproval]:
        self._expire_approvals()
        stmt = select(KeyApproval).order_by(KeyApproval.requested_at.desc())
        if status:
            stmt = stmt.where(KeyApproval.status == status)
        return list(self.session.scalars(stmt))

    # ---- generate, activate, rotate, retire ---------------------------------------------------------------------

    def generate(self, purpose: str, *, officer: str | None) -> KeyView:
        """A new pending key: published in the JWKS, not used until activated."""
        if purpose not in ALL_PURPOSES:
            raise InvalidKeyState(f"Unknown key purpose {purpose!r}.")
        storage = active_kids(self._rows(), self.ring.now()).get("storage")
        key = self.ring.store.generate(purpose, wrap_with=storage)
        row = registry_row(key, activate_at=None, officer=_officer(officer))
        self.session.add(row)
        self.session.flush()
        return self._view(row)

    def activate(self, kid: str, *, officer: str | None, at: datetime | None = None) -> list[KeyView]:
        """pending -> active at `at` (not earlier than the activation delay); the current active key retires
        `overlap` later."""
        _officer(officer)
        row = self.get(kid)
        rows = self._rows()
        now = self.ring.now()
        active = active_kids(rows, now)
        if state_of(row, now, active) != "pending":
            raise InvalidKeyState(f"Key {kid} is {state_of(row, now, active)}; only a pending key can be activated.")
        if not self.ring.store.has(kid):
            raise InvalidKeyState(f"The key store has no private part for {kid}.")
        for other in rows:  # two scheduled activations of one purpose would race each other
            if other.purpose == row.purpose and other is not row and other.activate_at is not None \
                    and other.activate_at > now and other.revoked_at is None:
                raise InvalidKeyState(f"Key {other.kid} is already scheduled to activate; wait for it.")
        when = max(at or now, now + self.activation_delay)
        row.activate_at = when
        touched = [row]
        previous = next((r for r in rows if r.kid == active.get(row.purpose)), None)
        if previous is not None:
            previous.retire_at = when + self.overlap
            touched.append(previous)
        self.session.flush()
        return [self._view(r) for r in touched]

    def rotate(self, purpose: str, *, officer: str | None, at: datetime | None = None) -> list[KeyView]:
        """generate + activate in one step."""
        new = self.generate(purpose, officer=officer)
        return self.activate(new.record.kid, officer=officer, at=at)

    def retire(self, kid: str, *, officer: str | None) -> KeyView:
        """Stop trusting a pending or retiring key now. The active key cannot retire: rotate it instead."""
        _officer(officer)
        row = self.get(kid)
        state = self._view(row).state
        if state == "active":
            raise KeyInUse(f"Key {kid} is the active {row.purpose} key; rotate it instead of retiring it.")
        if state not in ("pending", "retiring"):
            raise InvalidKeyState(f"Key {kid} is {state}.")
        row.retire_at = self.ring.now()
        self.session.flush()
        return self._view(row)

    # ---- dual control: revoke, destroy, approve -----------------------------------------------------------------

    def request_revocation(self, kid: str, *, reason: str, officer: str | None,
                           principal: Principal) -> KeyApproval:
        row = self.get(kid)
        if row.revoked_at is not None:
            raise InvalidKeyState(f"Key {kid} is already revoked.")
        return self._file("revoke", row, reason=reason, officer=_officer(officer), principal=principal)

    def request_destruction(self, kid: str, *, reason: str | None, officer: str | None,
                            principal: Principal) -> KeyApproval:
        row = self.get(kid)
        self._check_destroyable(row)
        return self._file("destroy", row, reason=reason, officer=_officer(officer), principal=principal)

    def _file(self, operation: str, row: ExchangeKeyRecord, *, reason: str | None, officer: str,
              principal: Principal) -> KeyApproval:
        self._expire_approvals()
        approval = KeyApproval(operation=operation, kid=row.kid, reason=reason, status="pending",
                               requested_by=officer, requested_by_client=principal.client_id,
                               requested_by_keys=" ".join(sorted(principal.keys)), requested_at=self.ring.now(),
                               expires_at=self.ring.now() + APPROVAL_WINDOW)
        self.session.add(approval)
        self.session.flush()
        return approval

    def approve(self, approval_id: uuid.UUID, *, officer: str | None, principal: Principal) -> Outcome:
        """Execute a pending request filed by another principal: a different security client sharing none of the
        filer's keys (the officer ids are not what tells them apart)."""
        second = _officer(officer)
        approval = self.session.get(KeyApproval, approval_id)
        if approval is None:
            raise ApprovalNotFound(f"No approval request {approval_id}.")
        if approval.status != "pending":
            raise ApprovalClosed(f"The request was already {approval.status}.")
        if approval.expires_at <= self.ring.now():
            raise ApprovalExpired(f"The request expired at {approval.expires_at.isoformat()}; file it again.")
        if approval.requested_by_client is None:
            raise ApprovalClosed("The request was filed without a recorded security client; file it again.")
        filer_keys = set((approval.requested_by_keys or "").split()) | registered_keys(self.session,
                                                                                    approval.requested_by_client)
        if principal.shares_with(approval.requested_by_client, filer_keys):
            raise SamePrincipal(f"Security client {approval.requested_by_client} filed this request; a different "
                                "security client, with its own keys, must approve it.")
        if approval.requested_by == second:
            raise SameOfficer(f"{second} filed this request; another officer must approve it.")
        row = self.get(approval.kid)
        if approval.operation == "revoke":
            keys = self._revoke(row, reason=approval.reason or "", officer=second)
        else:
            keys = self._destroy(row)
        approval.status, approval.decided_by, approval.decided_at = "executed", second, self.ring.now()
        approval.decided_by_client = principal.client_id
        self.session.flush()
        return Outcome(keys=tuple(keys), approval=approval)

    def _expire_approvals(self) -> None:
        for stale in self.session.scalars(select(KeyApproval).where(
                KeyApproval.status == "pending", KeyApproval.expires_at <= self.ring.now())):
            stale.status = "expired"

    def _revoke(self, row: ExchangeKeyRecord, *, reason: str, officer: str) -> list[KeyView]:
        if row.revoked_at is not None:
            raise InvalidKeyState(f"Key {row.kid} is already revoked.")
        was = self._view(row).state
        now = self.ring.now()
        row.revoked_at, row.revoked_reason = now, reason
        touched = [self._view(row)]
        if was == "active":  # an emergency: a replacement takes over at once (verifiers reload on the unknown kid)
            new = self.generate(row.purpose, officer=officer)
            new.record.activate_at = now
            self.session.flush()
            touched.append(self._view(new.record))
        return touched

    def _check_destroyable(self, row: ExchangeKeyRecord) -> None:
        state = self._view(row).state
        if row.destroyed_at is not None:
            raise InvalidKeyState(f"Key {row.kid} is already destroyed.")
        if state in ("active", "pending"):
            raise KeyInUse(f"Key {row.kid} is {state}; only a retiring, retired or revoked key can be destroyed.")
        if row.purpose == "storage":
            wrapped = [k for k in self._rows() if k.destroyed_at is None and self.ring.store.wrapped_by(k.kid)
                       == row.kid]
            sealed = self.session.scalar(select(func.count()).select_from(EnvelopeEvidence)
                                         .where(EnvelopeEvidence.storage_kid == row.kid)) or 0
            sealed += self.session.scalar(select(func.count()).select_from(EnvelopeOutcome)
                                          .where(EnvelopeOutcome.storage_kid == row.kid)) or 0
            if wrapped or sealed:
                raise KeyInUse(f"Storage key {row.kid} still seals {len(wrapped)} key(s) and {sealed} evidence "
                               "row(s); run `exchange keys rewrap` first.")

    def _destroy(self, row: ExchangeKeyRecord) -> list[KeyView]:
        self._check_destroyable(row)
        self.ring.store.destroy(row.kid)
        row.destroyed_at = self.ring.now()
        self.session.flush()
        return [self._view(row)]

    # ---- rewrap and scheduled rotation --------------------------------------------------------------------------

    def rewrap(self, *, officer: str | None) -> RewrapResult:
        """Re-seal every key file and every evidence row under the active storage key (keys.md "rewrap")."""
        _officer(officer)
        storage = self.ring.active_secret()
        files = self.ring.store.rewrap(storage.kid)
        rows = 0
        while True:
            batch = list(self.session.scalars(select(EnvelopeEvidence).where(
                EnvelopeEvidence.storage_kid != storage.kid).limit(REWRAP_BATCH)))
            if not batch:
                break
            for evidence in batch:
                plaintext = self.ring.storage_key(evidence.storage_kid).open(evidence.sealed_plaintext)
                evidence.sealed_plaintext, evidence.storage_kid = storage.seal(plaintext), storage.kid
            self.session.flush()
            rows += len(batch)
        # Stored answers (kept for retries of their envelope): the expired ones are dropped, the others re-sealed.
        self.session.execute(delete(EnvelopeOutcome).where(EnvelopeOutcome.expires_at < self.ring.now()))
        for outcome in self.session.scalars(select(EnvelopeOutcome).where(
                EnvelopeOutcome.storage_kid.is_not(None), EnvelopeOutcome.storage_kid != storage.kid)):
            if outcome.sealed_body is not None and outcome.storage_kid is not None:
                body = self.ring.storage_key(outcome.storage_kid).open(outcome.sealed_body)
                outcome.sealed_body, outcome.storage_kid = storage.seal(body), storage.kid
        self.session.flush()
        return RewrapResult(storage_kid=storage.kid, key_files=files, evidence_rows=rows)

    def rotate_due(self, *, officer: str | None, max_age_days: Mapping[str, float] | None = None,
                   publish_ahead: timedelta = timedelta(minutes=2)) -> list[KeyView]:
        """Rotate every active key older than its maximum age that has no successor scheduled yet (for cron).

        The successor is published at once and activated `publish_ahead` later, so partners caching the JWKS
        (Cache-Control max-age 60) have seen it before it signs.
        """
        ages = {**DEFAULT_MAX_AGE_DAYS, **(max_age_days or {})}
        now = self.ring.now()
        rows = self._rows()
        active = active_kids(rows, now)
        rotated: list[KeyView] = []
        for purpose, kid in sorted(active.items()):
            row = next(r for r in rows if r.kid == kid)
            if row.activate_at is None or now - row.activate_at < timedelta(days=ages[purpose]):
                continue
            scheduled = any(r.purpose == purpose and r.activate_at is not None and r.activate_at > now
                            and r.revoked_at is None for r in rows)
            if scheduled:
                continue
            rotated.extend(self.rotate(purpose, officer=officer, at=now + publish_ahead))
        return rotated


def _officer(officer: str | None) -> str:
    if not officer:
        raise OfficerRequired()
    return officer


