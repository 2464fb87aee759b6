"""Benchmark name screening at register scale: latency of one query, a 300-traveller batch, and quality.

    .venv/bin/python bench/screening.py [--database-url postgresql+psycopg://root@127.0.0.1:5432/test]
                                        [--sizes 2000,20000,100000] [--queries 1000] [--unregistered 500]
                                        [--batch 300] [--full-scan-up-to 2000] [--full-scan-queries N]
                                        [--before-matching FILE] [--database FILE_OR_URL] [--seed 14]
                                        [--json out.json]

A standalone script (no gunicorn, no HTTP): for each register size it loads a scratch database (a temporary SQLite
file, or `exchange_bench_<random>` created on the given PostgreSQL server and dropped at the end) with that many
generated Tajik returnees, in bulk (the rows `RegisterService` would write, computed by the same functions, inserted
in batches), then prints, without judging:

- p50 / p99 / max of one name query *server side*: `RegisterService.screen_by_name` in its own session, as the view
  calls it (index lookup, candidate names, scoring, loading the returnees shown), over every labelled query;
- the time of one `RegisterService.screen_many` call for `--batch` travellers (a flight manifest), best and median
  of 3;
- quality on a labelled set: the first-place rate (the registered person among the best-scored candidates) by
  spelling kind and overall, and the share of unregistered travellers with any candidate at the default threshold
  (70). At sizes up to `--full-scan-up-to` the same queries are also scored by a full scan (every register name,
  as screening did before the index), with this scorer and, with `--before-matching FILE` (a `matching.py` of an
  earlier revision, e.g. `git show main:exchange/register/matching.py > /tmp/matching_before.py`), with that one:
  the loss from retrieval and the change of the scorer, measured on the same queries in the same run.
  `--full-scan-queries N` scores only N queries (a seeded sample) by the full scan, the index figures of the same
  queries printed beside), which makes a full scan at 100,000 a matter of minutes.

`--database FILE_OR_URL` uses that database (a SQLite file, or a PostgreSQL database that exists) instead of a scratch
one and keeps it: returnees an earlier run with the same `--seed` loaded are not loaded again, so a 100,000 register
is loaded once for several runs (one size per database: it must not hold more returnees than the size).

The names come from lists of real Tajik given names and surname stems written below (surnames in -ов/-ова, -зода,
-ӣ and the bare stem, Russian-style patronymics), romanised by several schemes (Russian Cyrillic, English/BGN,
ICAO 9303 from the Russian form, French, Latin with diacritics), with spelling noise for the queries.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from harness import machine_info, make_console
from rich.table import Table
from run import scratch_database
from sqlalchemy import Engine, insert
from sqlalchemy.orm import Session

from exchange import migrate
from exchange.db import make_engine
from exchange.identity import Caller
from exchange.register import matching, services
from exchange.register.models import Returnee, ReturneeNameBlock, ReturneeNameChange, ReturneeSearchKey
from exchange.register.schemas import BorderReturneeView
from exchange.register.services import NameQuery, RegisterService, screening_keys
from exchange.register.transliteration import parse_partial_date
from exchange.register.views import returnee_collections

BORDER = Caller(agency="border", client_id="bench", purpose="border-screening")
MIN_SCORE = 70.0
LIMIT = 10
SHOWN = returnee_collections(BorderReturneeView)  # what the screening view loads with each returnee it shows
INSERT_BATCH = 2000

# ---- real Tajik names ------------------------------------------------------------------------------------------

MALE = """Абдулло Абдураҳмон Абдулазиз Абдураҳим Абубакр Азиз Акбар Алишер Амир Анвар Ашрафҷон Баҳодур Бахтиёр Бобур
Гулмурод Далер Давлат Диловар Дилшод Зафар Зоир Зубайдулло Иброҳим Ибодулло Илҳом Исмоил Исфандиёр Ҷалол Ҷамшед
Ҷонибек Ҷӯрабек Камол Карим Кароматулло Комрон Луқмон Мансур Манучеҳр Маҳмуд Меҳрубон Мирзо Муҳаммад Муҳиддин
Мустафо Наврӯз Назар Неъмат Носир Нозим Нурулло Нурмаҳмад Одина Парвиз Раҳим Раҳмон Раҷаб Рашид Рустам Саид Саидҷон
Самандар Сафар Сиёвуш Сино Сӯҳроб Темур Тоҳир Убайдулло Умед Фаридун Фаррух Фарҳод Фирдавс Фозил Хуршед Ҳамза Ҳасан
Ҳусейн Ҳалим Шамсиддин Шариф Шаҳбоз Шералӣ Шодмон Шоҳрух Шуҳрат Эмомалӣ Эраҷ Юсуф Ёқуб Қодир Қурбон Ғуломҷон""".split()
FEMALE = """Анора Бибиҷон Гулбаҳор Гулноза Гулнора Гулчеҳра Дилафрӯз Дилноза Дилором Заррина Зарина Зулфия Лайло
Мавлуда Мадина Малика Манижа Мастона Меҳрангез Моҳира Мунира Муниса Наргис Нигина Нилуфар Нодира Озода Оиша Паризод
Парвина Раъно Рухсора Сабрина Сарвиноз Ситора Сурайё Таҳмина Умеда Фарзона Фируза Фотима Хосият Ҳабиба Ҳусниё
Шабнам Шаҳло Ширин Шоира Юлдуз""".split()
STEMS = """Абдулло Абдураҳим Абдусалом Азиз Акрам Амин Ашур Бадал Бахтиёр Бобо Гадо Давлат Давлатёр Зиё Зокир Зуҳур
Иброҳим Исмоил Исо Ҷалол Ҷамол Ҷумъа Ҷӯра Камол Карим Латиф Маҳмуд Мирзо Муҳаммад Мусо Мӯъмин Наби Назар Неъмат
Нозим Нур Нурмаҳмад Одил Одина Олим Пирмат Пӯлод Раҳим Раҳматулло Раҳмон Раҷаб Рашид Ризо Рустам Саид Сайфулло
Саъдулло Салим Самад Сатор Сафар Собир Субҳон Табар Тағо Тоҳир Турсун Убайд Умар Умед Усмон Файз Фозил Ғафур Ғулом
Ҳаким Ҳамид Ҳайдар Ҳалим Ҳасан Ҳотам Ҳусейн Холиқ Худойназар Шамсиддин Шариф Шер Шодмон Шукур Эргаш Эшон Юсуф Ёқуб
Қаҳҳор Қиём Қодир Қосим Қурбон""".split()
COMPOUND = {"Абдулазиз": ("Абдул", "Азиз"), "Абдураҳмон": ("Абдур", "Раҳмон"), "Абдураҳим": ("Абдур", "Раҳим"),
            "Нурмаҳмад": ("Нур", "Маҳмад"), "Ашрафҷон": ("Ашраф", "ҷон"), "Саидҷон": ("Саид", "ҷон"),
            "Ғуломҷон": ("Ғулом", "ҷон"), "Шералӣ": ("Шер", "Алӣ"), "Эмомалӣ": ("Эмом", "Алӣ")}
VOWELS = set("аеёиӣоуӯэюя")

# ---- romanisation schemes (from Tajik Cyrillic) ----------------------------------------------------------------

TO_RUSSIAN = {"ҳ": "х", "ҷ": "дж", "ғ": "г", "қ": "к", "ӯ": "у", "ӣ": "и"}
ENGLISH = {"а": "a", "б": "b", "в": "v", "г": "g", "ғ": "gh", "д": "d", "е": "e", "ё": "yo", "ж": "zh", "з": "z",
           "и": "i", "ӣ": "i", "й": "y", "к": "k", "қ": "q", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p",
           "р": "r", "с": "s", "т": "t", "у": "u", "ӯ": "u", "ф": "f", "х": "kh", "ҳ": "h", "ч": "ch", "ҷ": "j",
           "ш": "sh", "ъ": "'", "э": "e", "ю": "yu", "я": "ya"}
ICAO = {"а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z", "и": "i",
        "й": "i", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t", "у": "u",
        "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "ie", "ы": "y", "ь": "", "э": "e",
        "ю": "iu", "я": "ia"}
FRENCH = {**ENGLISH, "ё": "io", "ж": "j", "й": "ï", "қ": "k", "у": "ou", "ӯ": "ou", "ч": "tch", "ҷ": "dj",
          "ш": "ch", "ъ": "", "ю": "iou", "я": "ia"}
DIACRITIC = {**ENGLISH, "ғ": "ğ", "ж": "ž", "ӣ": "ī", "ӯ": "ū", "х": "x", "ч": "č", "ш": "š", "ъ": "ʼ"}


def russian(word: str) -> str:
    return "".join(TO_RUSSIAN.get(c, TO_RUSSIAN.get(c.lower(), c).capitalize() if c.isupper() else c) for c in word)


def romanise(word: str, table: dict[str, str]) -> str:
    out = []
    for i, c in enumerate(word):
        low = c.lower()
        latin = table.get(low, low)
        if low == "е" and table is ENGLISH and (i == 0 or word[i - 1].lower() in VOWELS):
            latin = "ye"
        if table is FRENCH and low == "с" and 0 < i < len(word) - 1 and word[i - 1].lower() in VOWELS \
                and word[i + 1].lower() in VOWELS:
            latin = "ss"
        out.append(latin)
    return "".join(out).capitalize()


def scheme(name: str) -> Callable[[str], str]:
    return {
        "tajik cyrillic": lambda w: w,
        "russian cyrillic": russian,
        "english": lambda w: romanise(w, ENGLISH),
        "icao (from russian)": lambda w: romanise(russian(w), ICAO).upper(),
        "french": lambda w: romanise(w, FRENCH),
        "latin with diacritics": lambda w: romanise(w, DIACRITIC),
    }[name]


# ---- people ----------------------------------------------------------------------------------------------------


@dataclass
class Person:
    given: str
    stem: str
    surname: str
    patronymic: str | None
    sex: str
    birth_date: str | None
    variants: list[str] = field(default_factory=list)
    id: uuid.UUID | None = None


def surname_of(stem: str, female: bool, rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.55:
        ending = ("ева" if female else "ев") if stem[-1] in VOWELS else ("ова" if female else "ов")
        return stem + ending
    if roll < 0.85:
        return stem + "зода"
    if roll < 0.96 and stem[-1] not in VOWELS:
        return stem + "ӣ"
    return stem


def patronymic_of(father: str, female: bool) -> str | None:
    if father.endswith("ӣ"):
        return None
    if father[-1] in VOWELS:
        return father + ("евна" if female else "евич")
    return father + ("овна" if female else "ович")


def birth_date(rng: random.Random) -> str | None:
    roll = rng.random()
    year = rng.randint(1960, 2006)
    if roll < 0.70:
        return f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if roll < 0.85:
        return f"{year}"
    if roll < 0.90:
        return f"{year}-{rng.randint(1, 12):02d}"
    return None


def make_person(rng: random.Random) -> Person:
    female = rng.random() < 0.3
    given = rng.choice(FEMALE if female else MALE)
    stem = rng.choice(STEMS)
    patronymic = patronymic_of(rng.choice(MALE), female) if rng.random() < 0.6 else None
    person = Person(given=given, stem=stem, surname=surname_of(stem, female, rng), patronymic=patronymic,
                    sex="female" if female else "male", birth_date=birth_date(rng),
                    id=uuid.UUID(int=rng.getrandbits(128), version=4))  # seeded: ties break alike on every run
    if rng.random() < 0.5:
        to = scheme(rng.choice(["english", "icao (from russian)", "russian cyrillic"]))
        person.variants.append(f"{to(person.given)} {to(person.surname)}")
    return person


def make_register(size: int, rng: random.Random) -> list[Person]:
    return [make_person(rng) for _ in range(size)]


# ---- spelling kinds of the labelled queries --------------------------------------------------------------------

LATIN = "abdefghijklmnoprstuvz"


def typo(word: str, rng: random.Random) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.choice(["substitute", "delete", "insert", "transpose"])
    if kind == "substitute":
        return word[:i] + rng.choice(LATIN) + word[i + 1:]
    if kind == "delete":
        return word[:i] + word[i + 1:]
    if kind == "insert":
        return word[:i] + rng.choice(LATIN) + word[i:]
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def russian_suffix(person: Person) -> str:
    """-зода / -ӣ / the bare stem written in the Russian -ов form, or -ов written -зода."""
    female = person.sex == "female"
    if person.surname.endswith(("ов", "ев", "ова", "ева")):
        return person.stem + "зода"
    return person.stem + (("ева" if female else "ев") if person.stem[-1] in VOWELS else ("ова" if female else "ов"))


def vowel_habits(word: str, rng: random.Random) -> str:
    out = []
    for c in word:
        if c == "о" and rng.random() < 0.7:
            out.append("а")
        elif c == "е" and rng.random() < 0.7:
            out.append("и")
        elif c == "и" and rng.random() < 0.3:
            out.append("е")
        else:
            out.append(c)
    return "".join(out)


def spell(kind: str, p: Person, rng: random.Random) -> str:  # noqa: C901, PLR0911, PLR0912
    en = scheme("english")
    if kind in ("tajik cyrillic", "russian cyrillic", "english", "icao (from russian)", "french",
                "latin with diacritics"):
        to = scheme(kind)
        words = [to(p.given), to(p.surname)]
        return " ".join(reversed(words)) if kind == "icao (from russian)" else " ".join(words)
    if kind == "surname first, upper case":
        return f"{en(p.surname)} {en(p.given)}".upper()
    if kind == "one typo":
        words = [en(p.given), en(p.surname)]
        i = rng.randrange(2)
        words[i] = typo(words[i], rng)
        return " ".join(words)
    if kind == "a typo in each word":
        return f"{typo(en(p.given), rng)} {typo(en(p.surname), rng)}"
    if kind == "surname ending -ов / -зода swapped":
        to = scheme(rng.choice(["russian cyrillic", "english"]))
        return f"{to(p.given)} {to(russian_suffix(p))}"
    if kind == "russian vowel habits":
        return f"{russian(vowel_habits(p.given, rng))} {russian(p.surname)}"
    if kind == "french, -off":
        fr = scheme("french")
        surname = fr(russian_suffix(p) if not p.surname.endswith(("ов", "ев")) else p.surname)
        return f"{fr(p.given)} {surname[:-1] + 'ff' if surname.endswith('v') else surname}"
    if kind == "with patronymic":
        to = scheme(rng.choice(["russian cyrillic", "english"]))
        patronymic = p.patronymic or patronymic_of(rng.choice(MALE), p.sex == "female") or "Каримович"
        return f"{to(p.surname)} {to(p.given)} {to(patronymic)}"
    if kind == "initial of the given name":
        return f"{en(p.given)[0]}. {en(p.surname)}"
    if kind == "compound given name split or joined":
        if p.given in COMPOUND:
            return " ".join(en(part) for part in COMPOUND[p.given]) + f" {en(p.surname)}"
        return f"{en(p.given)}-{en(p.surname)}"
    if kind == "russian, year only":
        return f"{russian(p.surname)} {russian(p.given)}"
    raise ValueError(kind)


KINDS = ("tajik cyrillic", "russian cyrillic", "english", "icao (from russian)", "french", "latin with diacritics",
         "surname first, upper case", "one typo", "a typo in each word", "surname ending -ов / -зода swapped",
         "russian vowel habits", "french, -off", "with patronymic", "initial of the given name",
         "compound given name split or joined", "russian, year only")


def query_date(person: Person, kind: str, rng: random.Random) -> str | None:
    """The traveller's date as the document gives it, with noise; the register's may be partial or unknown."""
    if person.birth_date is None:
        full = f"{rng.randint(1960, 2006)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    else:
        year, month, day = parse_partial_date(person.birth_date)
        full = f"{year}-{month or rng.randint(1, 12):02d}-{day or rng.randint(1, 28):02d}"
    if kind == "russian, year only":
        return full[:4]
    roll = rng.random()
    if roll < 0.65:
        return full
    if roll < 0.80:
        return full[:4]
    if roll < 0.88:
        return None
    year, month, day = (int(x) for x in full.split("-"))
    if roll < 0.96 or day > 12:
        return f"{year + rng.choice((-1, 1))}-{month:02d}-{day:02d}"
    return f"{year}-{day:02d}-{month:02d}"


@dataclass(frozen=True)
class Query:
    kind: str
    name: str
    birth_date: str | None
    target: uuid.UUID | None  # None: an unregistered traveller


def labelled_queries(register: list[Person], count: int, unregistered: int, rng: random.Random) -> list[Query]:
    queries = []
    compound = [p for p in register if p.given in COMPOUND]
    for i in range(count):
        kind = KINDS[i % len(KINDS)]
        person = rng.choice(compound if kind.startswith("compound") and compound else register)
        queries.append(Query(kind, spell(kind, person, rng), query_date(person, kind, rng), person.id))
    registered = {(p.given, p.stem) for p in register}
    while len(queries) < count + unregistered:
        person = make_person(rng)
        if (person.given, person.stem) in registered:
            continue
        to = scheme(rng.choice(["english", "russian cyrillic", "icao (from russian)", "french"]))
        full = f"{rng.randint(1960, 2006)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        queries.append(Query("unregistered", f"{to(person.given)} {to(person.surname)}", full, None))
    return queries


# ---- loading ---------------------------------------------------------------------------------------------------


def load(engine: Engine, people: Sequence[Person], first_number: int) -> None:
    now = datetime.now(UTC)
    returnees, keys, blocks = [], [], []
    with engine.begin() as connection:
        for n, p in enumerate(people, start=first_number):
            full = " ".join(x for x in (p.given, p.patronymic, p.surname) if x)
            variants = [{"value": v, "script": "latn", "kind": "transliteration"} for v in p.variants]
            returnees.append({
                "id": p.id, "created_at": now, "updated_at": now, "version": 1,
                "register_number": f"RT-2026-{n:06d}", "given_name": p.given, "surname": p.surname,
                "patronymic": p.patronymic, "full_name": full, "name_variants": variants,
                "birth_date": p.birth_date, "birth_place": None, "sex": p.sex, "citizenship": "TJ",
                "identifications": [], "conflict_history": [], "accompanying_persons": [], "status": "reported",
                "risk_level": "unknown", "handling_code": "H0", "handling_restriction": None,
            })
            birth_year = parse_partial_date(p.birth_date)[0] if p.birth_date else None
            found, found_blocks = screening_keys(full_name=full, given_name=p.given, surname=p.surname,
                                                 name_variants=variants, identifications=[])
            keys += [{"returnee_id": p.id, "kind": kind, "key": key, "original": original, "birth_year": birth_year}
                     for (kind, key), original in found.items()]
            blocks += [{"returnee_id": p.id, "block": b, "birth_year": birth_year} for b in sorted(found_blocks)]
        changes = [{"returnee_id": p.id} for p in people]  # what each worker's name index catches up from
        for table, rows in ((Returnee.__table__, returnees), (ReturneeSearchKey.__table__, keys),
                            (ReturneeNameBlock.__table__, blocks), (ReturneeNameChange.__table__, changes)):
            for start in range(0, len(rows), INSERT_BATCH):
                connection.execute(insert(table), rows[start:start + INSERT_BATCH])


# ---- measuring -------------------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def first_place(ranked: Sequence[tuple[str, float]], target: uuid.UUID) -> bool:
    """The target is among the candidates with the best score (ties with a namesake of the same date count)."""
    if not ranked:
        return False
    best = ranked[0][1]
    return any(rid == str(target) and score == best for rid, score in ranked)


@dataclass
class Quality:
    label: str
    hits: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)
    unregistered_above: int = 0
    unregistered: int = 0
    ranked: list[Sequence[tuple[str, float]]] = field(default_factory=list)  # each query's answer, in order

    def add(self, query: Query, ranked: Sequence[tuple[str, float]]) -> None:
        self.ranked.append(ranked)
        if query.target is None:
            self.unregistered += 1
            self.unregistered_above += bool(ranked)
            return
        self.totals[query.kind] += 1
        self.hits[query.kind] += first_place(ranked, query.target)

    def first_place_rate(self, kind: str | None = None) -> float:
        if kind is None:
            return 100.0 * sum(self.hits.values()) / max(1, sum(self.totals.values()))
        return 100.0 * self.hits[kind] / max(1, self.totals[kind])

    def false_positive_share(self) -> float:
        return 100.0 * self.unregistered_above / max(1, self.unregistered)

    def summary(self) -> dict[str, Any]:
        return {"label": self.label, "first_place_percent": round(self.first_place_rate(), 2),
                "unregistered_above_threshold_percent": round(self.false_positive_share(), 2),
                "by_kind": {k: round(self.first_place_rate(k), 1) for k in self.totals}}


def service_pass(engine: Engine, queries: Sequence[Query]) -> tuple[list[float], list[float], Quality]:
    """Each query as the screening view runs it: its own session, the returnees loaded for the border view."""
    latencies: list[float] = []
    cpu: list[float] = []
    quality = Quality("index (screen_by_name)")
    for q in queries:
        start, start_cpu = time.perf_counter(), time.process_time()
        with Session(engine) as session:
            hits = RegisterService(session=session).screen_by_name(
                BORDER, name=q.name, birth_date=q.birth_date, limit=LIMIT, min_score=MIN_SCORE, collections=SHOWN)
            ranked = [(str(h.returnee.id), h.score) for h in hits]
        latencies.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        quality.add(q, ranked)
    return latencies, cpu, quality


def batch_seconds(engine: Engine, queries: Sequence[Query], size: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of three `screen_many` calls for the first `size` queries."""
    travellers = [NameQuery(name=q.name, birth_date=q.birth_date) for q in queries[:size]]
    times, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        with Session(engine) as session:
            RegisterService(session=session).screen_many(BORDER, travellers, limit=LIMIT, min_score=MIN_SCORE,
                                                         collections=SHOWN)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return times, cpu


def subset(queries: Sequence[Query], count: int | None) -> list[Query]:
    """`count` of `queries` drawn at random (seeded; registered and unregistered alike); all of them if None."""
    if count is None or count >= len(queries):
        return list(queries)
    chosen = sorted(random.Random(count).sample(range(len(queries)), count))  # seeded: the same on every run
    return [queries[i] for i in chosen]


def full_scan(module: ModuleType, label: str, register: list[Person], queries: Sequence[Query]) -> Quality:
    """Every register name scored for every query, as screening did before the index (names from the rows the
    register stores, without their stored keys: the old scorer keys them itself)."""
    candidates = []
    for p in register:
        full = " ".join(x for x in (p.given, p.patronymic, p.surname) if x)
        names = tuple(dict.fromkeys([full, f"{p.given} {p.surname}", *p.variants]))
        candidates.append(module.Candidate(record_id=str(p.id), names=names, birth_date=p.birth_date))
    quality = Quality(label)
    for q in queries:
        matches = module.rank_candidates(name=q.name, birth_date=q.birth_date, candidates=candidates,
                                         min_score=MIN_SCORE, limit=LIMIT)
        quality.add(q, [(m.record_id, m.score) for m in matches])
    return quality


def import_matching(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("matching_before", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["matching_before"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


# ---- the run ---------------------------------------------------------------------------------------------------


def analyze(engine: Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql("ANALYZE")


def run(args: argparse.Namespace, database_url: str) -> dict[str, Any]:
    console = make_console(stderr=True)
    sizes = sorted(args.sizes)
    rng = random.Random(args.seed)
    everyone = make_register(sizes[-1], rng)
    before = import_matching(args.before_matching) if args.before_matching else None
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    report: dict[str, Any] = {"settings": {k: str(v) for k, v in vars(args).items()}, "machine": machine_info(),
                              "database": engine.dialect.name, "sizes": []}
    with Session(engine) as session:
        loaded = session.query(Returnee).count()
    if loaded > sizes[0]:
        raise SystemExit(f"the database holds {loaded:,} returnees, more than the size {sizes[0]:,}")
    try:
        for size in sizes:
            start = time.perf_counter()
            for offset in range(loaded, size, 10_000):
                load(engine, everyone[offset:min(size, offset + 10_000)], offset + 1)
                console.print(f"  loaded {min(size, offset + 10_000):,} returnees", highlight=False)
            loaded = size
            analyze(engine)
            load_seconds = time.perf_counter() - start
            register = everyone[:size]
            queries = labelled_queries(register, args.queries, args.unregistered, random.Random(args.seed + size))
            console.print(f"{size:,} returnees loaded in {load_seconds:.1f} s; {len(queries)} queries", highlight=False)
            service_pass(engine, queries[:20])  # warm-up: connections, statement caches
            latencies, cpu, quality = service_pass(engine, queries)
            batch, batch_cpu = batch_seconds(engine, queries, args.batch)
            qualities = [quality]
            if size <= args.full_scan_up_to:
                console.print("  full scans ...", highlight=False)
                scanned = subset(queries, args.full_scan_queries)
                if len(scanned) < len(queries):
                    on_subset = Quality(f"index, the {len(scanned)} full-scan queries")
                    chosen = {id(q) for q in scanned}
                    for q, ranked in zip(queries, quality.ranked, strict=True):
                        if id(q) in chosen:
                            on_subset.add(q, ranked)
                    qualities.append(on_subset)
                qualities.append(full_scan(matching, "full scan, this scorer", register, scanned))
                if before is not None:
                    qualities.append(full_scan(before, f"full scan, {args.before_matching.name}", register, scanned))
            report["sizes"].append({
                "register_names": size, "load_seconds": round(load_seconds, 1), "queries": len(queries),
                "query_ms": {"p50": round(percentile(latencies, 50), 2), "p99": round(percentile(latencies, 99), 2),
                             "max": round(max(latencies), 2), "mean": round(statistics.fmean(latencies), 2)},
                "query_cpu_ms": {"p50": round(percentile(cpu, 50), 2), "p99": round(percentile(cpu, 99), 2)},
                "batch": {"travellers": args.batch, "seconds": [round(t, 3) for t in batch],
                          "cpu_seconds": [round(t, 3) for t in batch_cpu]},
                "quality": [q.summary() for q in qualities],
            })
    finally:
        engine.dispose()
    return report


def print_report(report: dict[str, Any]) -> None:
    console = make_console()
    table = Table(title=f"name screening, {report['database']} (server side, in-process)")
    for column in ("register names", "p50 ms", "p99 ms", "max ms", "cpu p50 / p99 ms", "batch s (best / median)",
                   "batch cpu s (best)",
                   "scored by",
                   "first place %", "unregistered >= 70 %"):
        table.add_column(column, justify="right" if column != "scored by" else "left")
    for size in report["sizes"]:
        ms, batch = size["query_ms"], size["batch"]["seconds"]
        for i, quality in enumerate(size["quality"]):
            cpu = size["query_cpu_ms"]
            head = ([f"{size['register_names']:,}", f"{ms['p50']:.1f}", f"{ms['p99']:.1f}", f"{ms['max']:.1f}",
                     f"{cpu['p50']:.1f} / {cpu['p99']:.1f}", f"{min(batch):.2f} / {statistics.median(batch):.2f}",
                     f"{min(size['batch']['cpu_seconds']):.2f}"]
                    if i == 0 else [""] * 7)
            table.add_row(*head, quality["label"], f"{quality['first_place_percent']:.1f}",
                          f"{quality['unregistered_above_threshold_percent']:.1f}")
    console.print(table)
    kinds = Table(title="first place % by spelling kind")
    kinds.add_column("kind")
    columns = [(size["register_names"], q) for size in report["sizes"] for q in size["quality"]]
    for register_names, quality in columns:
        kinds.add_column(f"{register_names:,}\n{quality['label']}", justify="right")
    for kind in KINDS:
        kinds.add_row(kind, *(f"{q['by_kind'].get(kind, float('nan')):.1f}" for _, q in columns))
    console.print(kinds)
    console.print(f"batch: {report['sizes'][0]['batch']['travellers']} travellers in one screen_many call; "
                  f"threshold {MIN_SCORE:g}, limit {LIMIT}; cpu: this process's CPU time (with SQLite, the database's "
                  f"too); load average at the start {report['machine']['load_average']}", highlight=False)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="a PostgreSQL server (a scratch database is made on it); "
                                               "default: a temporary SQLite file")
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",")], default=[2000, 20000, 100000])
    parser.add_argument("--queries", type=int, default=1000, help="labelled queries of registered people")
    parser.add_argument("--unregistered", type=int, default=500, help="queries of people not in the register")
    parser.add_argument("--batch", type=int, default=300, help="travellers in the screen_many call")
    parser.add_argument("--full-scan-up-to", type=int, default=2000,
                        help="also score every query by a full scan at register sizes up to this")
    parser.add_argument("--full-scan-queries", type=int,
                        help="score only this many queries (a seeded sample of the set) by the full scan")
    parser.add_argument("--database", help="a SQLite file or PostgreSQL database URL to use and keep (loaded once)")
    parser.add_argument("--before-matching", type=Path, help="a matching.py to compare with (full scan)")
    parser.add_argument("--candidates", type=int, default=services.SCREENING_CANDIDATES,
                        help="returnees scored per query (RegisterService's SCREENING_CANDIDATES)")
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    services.SCREENING_CANDIDATES = args.candidates
    if args.database:
        if len(args.sizes) != 1:
            raise SystemExit("--database takes one size (--sizes N)")
        url = args.database if "://" in args.database else f"sqlite:///{Path(args.database).resolve()}"
        report = run(args, url)
    else:
        with tempfile.TemporaryDirectory() as workdir, scratch_database(args.database_url, Path(workdir)) as url:
            report = run(args, url)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
