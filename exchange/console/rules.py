"""Anomaly rules that explain themselves. Each rule reads the verified entries in order (`Analyzer.feed`) and raises
flags (`store.Flag`): what it saw, the threshold it applies, the entries that made it fire and the search that lists
them. A flag's key is derived from what it is about (rule, subject, first entry), so an auditor's review note stays
attached to it when the log is loaded again.

- bulk:     one client consulted at least `bulk_records` distinct records (returnees and their documents) within
            `bulk_window` seconds (sliding);
- no-case:  consultations and disclosures without a case reference, per client and day;
- hours:    calls that read or change data outside working hours or days (in `timezone`), per client and day;
- denials:  at least `denial_burst` refused calls (401/403) within `denial_window` seconds from one client or one
            source address (sliding);
- key-op / client-op: every operation on the exchange's keys or on clients (privileged actions: CJIS 5.4).
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from exchange.console.store import DATA_ACTIONS, Flag

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MAX_FLAG_ENTRIES = 1000  # a flag lists at most this many entries; its search lists them all


@dataclass(frozen=True, kw_only=True)
class RuleConfig:
    bulk_records: int = 20
    bulk_window: int = 3600
    work_start: int = 7  # hour, inclusive
    work_end: int = 19  # hour, exclusive
    work_days: frozenset[int] = frozenset(range(5))  # Monday = 0
    timezone: str = "UTC"
    denial_burst: int = 10
    denial_window: int = 600
    case_ref_exempt: frozenset[str] = frozenset({"auditor"})  # agencies whose reads need no case reference

    @staticmethod
    def parse_hours(text: str) -> tuple[int, int]:
        """`7-19` or `07:00-19:00`."""
        start, sep, end = text.partition("-")
        if not sep:
            raise ValueError("working hours are START-END, e.g. 07:00-19:00")
        hours = [int(part.split(":")[0]) for part in (start, end)]
        if not 0 <= hours[0] < hours[1] <= 24:
            raise ValueError("working hours are START-END within 0-24, START before END")
        return hours[0], hours[1]

    @staticmethod
    def parse_days(text: str) -> frozenset[int]:
        """`Mon-Fri` or `Mon,Tue,Sat`."""
        names = [d.lower() for d in DAYS]
        days: set[int] = set()
        for part in text.split(","):
            first, sep, last = part.strip().lower()[:7].partition("-")
            if first[:3] not in names or (sep and last[:3] not in names):
                raise ValueError(f"working days are like Mon-Fri or Mon,Wed: {text!r}")
            a, b = names.index(first[:3]), names.index((last or first)[:3])
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        return frozenset(days)

    def describe_hours(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.work_days))
        return f"{self.work_start:02d}:00-{self.work_end:02d}:00 {days} ({self.timezone})"


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Window:
    """A sliding window per subject: the events of the last `span` seconds and how many distinct items they hold."""

    span: int
    events: deque[tuple[int, int, tuple[str, ...]]] = field(default_factory=deque)
    items: dict[str, int] = field(default_factory=dict)
    open: Flag | None = None
    peak: int = 0
    last: int = -1  # the last index added to the open flag

    def push(self, ts: int, index: int, items: tuple[str, ...]) -> None:
        events, counts = self.events, self.items
        while events and ts - events[0][0] >= self.span:
            for item in events.popleft()[2]:
                left = counts[item] - 1
                if left:
                    counts[item] = left
                else:
                    del counts[item]
        events.append((ts, index, items))
        for item in items:
            counts[item] = counts.get(item, 0) + 1


class Analyzer:
    def __init__(self, config: RuleConfig) -> None:
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        self.flags: list[Flag] = []
        self.heat: Counter[tuple[int, int]] = Counter()
        self._local: dict[int, tuple[int, int, str, bool]] = {}
        self._bulk: dict[str, _Window] = {}
        self._denials: dict[tuple[str, str], _Window] = {}
        self._daily: dict[tuple[str, str, str], Flag] = {}

    def _local_time(self, ts: int) -> tuple[int, int, str, bool]:
        """(weekday, hour, date, outside working hours) in the configured timezone; offsets are multiples of 15
        minutes, so cache by those."""
        key = ts // 900
        found = self._local.get(key)
        if found is None:
            moment = datetime.fromtimestamp(ts, self.tz)
            dow, hour, config = moment.weekday(), moment.hour, self.config
            off = hour < config.work_start or hour >= config.work_end or dow not in config.work_days
            found = self._local[key] = (dow, hour, moment.strftime("%Y-%m-%d"), off)
        return found

    def feed(self, index: int, ts: int, entry: dict[str, object]) -> None:
        get = entry.get
        action = str(get("action"))
        client = str(get("client_id") or "-")
        dow, hour, local_day, off_hours = self._local.get(ts // 900) or self._local_time(ts)
        self.heat[(dow, hour)] += 1
        success = get("outcome") == "success"
        if action in DATA_ACTIONS:
            if action in ("consult", "disclose"):
                records = get("record_ids")
                if isinstance(records, list) and records:
                    self._bulk_read(client, ts, index, tuple(map(str, records)))
                if success and not get("case_ref") and get("agency") not in self.config.case_ref_exempt:
                    self._daily_flag("no-case", client, local_day, ts, index, action_prefix=None)
            if off_hours:
                self._daily_flag("hours", client, local_day, ts, index, action_prefix=None)
        if not success and entry.get("status") in (401, 403):
            self._denial(("client", client), ts, index)
            source = entry.get("source_ip")
            if source:
                self._denial(("source", str(source)), ts, index)
        if action.startswith(("key.", "client.")):
            kind = "key-op" if action.startswith("key.") else "client-op"
            records = entry.get("record_ids") or []
            target = ", ".join(str(r) for r in records) if isinstance(records, list) else ""
            officer = entry.get("officer") or "no officer named"
            self.flags.append(Flag(
                key=f"{kind}:{index}", rule=kind, subject=target or action, start_ts=ts, end_ts=ts, count=1,
                explanation=f"{action} ({entry.get('outcome')}) on {target or 'no record'} by {entry.get('agency')} "
                            f"/ {client} ({officer}) at {_iso(ts)}: privileged operations are reviewed one by one.",
                search={"action": action, "index": str(index)}, entries=[index]))

    # ---- the rules ------------------------------------------------------------------------------------------------

    def _bulk_read(self, client: str, ts: int, index: int, records: tuple[str, ...]) -> None:
        window = self._bulk.get(client)
        if window is None:
            window = self._bulk[client] = _Window(self.config.bulk_window)
        window.push(ts, index, records)
        distinct = len(window.items)
        if distinct < self.config.bulk_records:
            return
        flag = window.open
        if flag is None or ts - flag.end_ts >= self.config.bulk_window:
            first = window.events[0][0]
            flag = window.open = Flag(key=f"bulk:{client}:{first}", rule="bulk", subject=client, start_ts=first,
                                      end_ts=ts, count=0, explanation="", search={}, entries=[])
            window.peak = 0
            self.flags.append(flag)
            new = [i for _, i, _ in window.events]
            window.last = index
        else:
            new = [i for _, i, _ in window.events if i > window.last]
        window.last = index
        window.peak = max(window.peak, distinct)
        flag.end_ts = ts
        flag.count += len(new)
        room = MAX_FLAG_ENTRIES - len(flag.entries)
        flag.entries.extend(new[:max(room, 0)])
        minutes = self.config.bulk_window // 60
        flag.explanation = (f"client {client} consulted up to {window.peak} distinct records (returnees and their "
                            f"documents) within {minutes} minutes, between {_iso(flag.start_ts)} and "
                            f"{_iso(flag.end_ts)} ({flag.count} calls); the rule fires at "
                            f"{self.config.bulk_records} distinct records within {minutes} minutes.")
        flag.search = {"client_id": client, "from": _iso(flag.start_ts), "to": _iso(flag.end_ts + 1)}

    def _denial(self, subject: tuple[str, str], ts: int, index: int) -> None:
        window = self._denials.get(subject)
        if window is None:
            window = self._denials[subject] = _Window(self.config.denial_window)
        window.push(ts, index, (str(index),))
        if len(window.events) < self.config.denial_burst:
            return
        kind, who = subject
        flag = window.open
        if flag is None or ts - flag.end_ts >= self.config.denial_window:
            first = window.events[0][0]
            flag = window.open = Flag(key=f"denials:{kind}:{who}:{first}", rule="denials", subject=f"{kind} {who}",
                                      start_ts=first, end_ts=ts, count=0, explanation="", search={}, entries=[])
            self.flags.append(flag)
            new = [i for _, i, _ in window.events]
        else:
            new = [index]
        flag.end_ts = ts
        flag.count += len(new)
        room = MAX_FLAG_ENTRIES - len(flag.entries)
        flag.entries.extend(new[:max(room, 0)])
        minutes = self.config.denial_window // 60
        flag.explanation = (f"{flag.count} refused calls (401/403) from {kind} {who} between {_iso(flag.start_ts)} "
                            f"and {_iso(flag.end_ts)}; the rule fires at {self.config.denial_burst} refusals within "
                            f"{minutes} minutes (a stolen or misconfigured credential, or probing).")
        flag.search = {"outcome": "failure", "from": _iso(flag.start_ts), "to": _iso(flag.end_ts + 1)} | (
            {"client_id": who} if kind == "client" else {})

    def _daily_flag(self, rule: str, client: str, day: str, ts: int, index: int, *, action_prefix: str | None) -> None:
        flag = self._daily.get((rule, client, day))
        if flag is None:
            flag = self._daily[(rule, client, day)] = Flag(
                key=f"{rule}:{client}:{day}", rule=rule, subject=client, start_ts=ts, end_ts=ts, count=0,
                explanation="", search={}, entries=[])
            self.flags.append(flag)
        flag.end_ts = ts
        flag.count += 1
        if len(flag.entries) < MAX_FLAG_ENTRIES:
            flag.entries.append(index)

    def finish(self) -> list[Flag]:
        for (rule, client, day), flag in self._daily.items():
            if rule == "no-case":
                flag.explanation = (f"client {client} consulted or received records {flag.count} time(s) on {day} "
                                    "without a case reference (LED art. 25 asks for the justification of every "
                                    "consultation).")
            else:
                flag.explanation = (f"client {client} read or changed data {flag.count} time(s) on {day} outside "
                                    f"working hours ({self.config.describe_hours()}), first at {_iso(flag.start_ts)}, "
                                    f"last at {_iso(flag.end_ts)}.")
            flag.search = {"client_id": client, "from": _iso(flag.start_ts), "to": _iso(flag.end_ts + 1)}
        return self.flags
