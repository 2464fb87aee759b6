"""Rank register records against a screened person's name and (possibly partial) birth date.

Names are compared on their `transliteration.name_key` tokens, so script and romanisation do not matter; what is
left is spelling noise, word order, and words present on one side only. Every score is a float from 0 to 100.

Name score (best over all of a candidate's names)
-------------------------------------------------
1. Token similarity: ``rapidfuzz.fuzz.ratio`` (normalised Indel similarity) of two words, rescaled so that
   anything up to 50 counts as unrelated: ``sim = max(0, (ratio - 50) * 2)``. One wrong letter in a 7-letter word
   (Halimov / Halimof, ratio 85.7) gives 71; two (Halimov / Karimov, 71.4) give 43; a different name
   (Gulmurod / Farhod, 42.9) gives 0. A one-letter word is an initial: 90 against a word starting with it.
   Three spelling habits are forgiven on top (the best figure counts): Russian vowel habits (о written а, е and и
   swapped: Комрон / Камран, Ҷамшед / Джамшид) and surname endings (-зода, -ӣ, -ов/-ев, -ова/-ева: Раҳимзода /
   Рахимов / Раҳимӣ, comparing the stems) give the similarity of the folded words less 10, only when those are
   nearly equal (ratio >= 85); a Latin query word with ``ch`` is also read with ``sh`` (French ш: Chodmon / Шодмон),
   less 2. A patronymic paired with a word that is not one (Маҳмуд / Маҳмудовна: the father's name, not the
   person's) counts 0.3 of its similarity.
2. Alignment: words are paired greedily, most similar pair first, each word used at most once, which makes the
   comparison insensitive to word order (surname first or given name first). A word may also pair with two
   *adjacent* words of the other name written together (Abdul Aziz / Abdulaziz) when that pair scores at least 80.
   Pairs are taken, even at similarity 0, until one of the two names has no word left, so a completely different
   given name pulls the score down instead of being ignored.
3. ``aligned = sum(sim * weight) / sum(weight)`` over the pairs, with ``weight`` the length of the longer word of a
   pair: long words carry more evidence than short ones.
4. Words left unpaired (on the longer name) are penalised: 2 points for a patronymic (ends in -ovich/-evich/-ovna/-evna/
   -ichna, or is ogli/ugli/kizi/ibn/bin), 8 for any other word, at most 16 in all. So a missing patronymic barely
   matters (100 -> 98), a missing surname somewhat more (100 -> 92).
5. ``name_score = max(0, aligned - penalty)``.

For "Gulmurod Halimov": "Гулмурод Халимов" 100; "Halimov Gulmurod" 100; "Gulmurod Halimof" (8*100 + 7*71.4) / 15 =
86.7; "Халимов Гулмурод Рахимович" 98; "Гулмурод Каримов" 73.3; "Фарҳод Халимов" 46.7; "Фирдавс Раҳимов" about 10.

Birth-date score
----------------
=====================================================================  =====
either date unknown (None, or an unparsable register value)             70  (neutral)
compatible, agreeing on year, month and day                            100
compatible, agreeing on year and month (one side has no day)            92
compatible, agreeing on the year only (1988 vs 1988-04-12)              85
same year, day and month swapped (1990-03-04 vs 1990-04-03)             75
same year, exactly one of month or day differs (a typo)                 60
same year, otherwise different                                          40
year off by one, the rest compatible                                    65
year off by one, the rest different                                     30
year differs in one digit (1980 vs 1990), the rest compatible           55
anything else                                                            0
=====================================================================  =====

Total
-----
``score = 0.65 * name_score + 0.35 * birth_date_score``, all three rounded to one decimal. A perfect name with an
exact date scores 100, with an unknown date 89.5, with a year-only date 94.8, with the year off by one 87.8, and
with a clearly different date 65 (below the default `min_score` of 70). Results are ordered by descending score, then
by ``record_id``; those below `min_score` are dropped and at most `limit` are returned.

Speed
-----
Each query word is compared with every distinct word of every candidate in one `rapidfuzz.process.extract` batch
per form (plain, vowels folded, stems); the per-name alignment then only looks similarities up. Candidates whose
birth date alone keeps them below `min_score`, and names whose best word pair cannot lift them above it, are
skipped. Name keys are cached (LRU, 32768 names), or given with the candidate (`Candidate.keys`, as the register
stores them). 10,000 candidates with three names each take a few tenths of a second: the register does not score
them all, it retrieves the few worth scoring by `name_blocks` / `query_blocks` and `candidate_birth_years`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter

from rapidfuzz import fuzz, process

from exchange.register.transliteration import name_key, parse_partial_date

__all__ = [
    "Candidate", "Match", "birth_date_score", "candidate_birth_years", "name_blocks", "name_score", "query_blocks",
    "rank_candidates",
]

NAME_WEIGHT = 0.65
BIRTH_DATE_WEIGHT = 0.35
UNKNOWN_BIRTH_DATE_SCORE = 70.0

_TOKEN_FLOOR = 50.0  # fuzz.ratio at or below this means "unrelated words"
_TOKEN_SCALE = 100.0 / (100.0 - _TOKEN_FLOOR)
_INITIAL_SCORE = 90.0
_GLUED_MIN_SCORE = 80.0
_GLUED_MIN_RATIO = _TOKEN_FLOOR + _GLUED_MIN_SCORE / _TOKEN_SCALE
_PATRONYMIC_PENALTY = 2.0
_EXTRA_WORD_PENALTY = 8.0
_MAX_PENALTY = 16.0
_PATRONYMIC_SUFFIXES = ("ovij", "evij", "ovna", "evna", "ijna")
_PATRONYMIC_WORDS = frozenset({"ogli", "ugli", "kizi", "ibn", "bin", "binti"})
_PATRONYMIC_CROSS_FACTOR = 0.3  # a patronymic paired with a word that is not one: the father's name, weak evidence
_LOOSE_PENALTY = 10.0  # a pair that is equal or close only after folding Russian vowel habits or surname endings
_LOOSE_MIN_RATIO = 85.0  # ... and only that close: folding vowels must not make short, different words look alike
_READING_PENALTY = 2.0  # a query word read with another romanisation's conventions (French "ch" for ш)
# Surname endings, in key form, longest first: Tajik -зода/-zoda (-zada, -zade), -ӣ (-i, -iy), Russian -ов/-ев(а).
_SURNAME_SUFFIXES = ("zoda", "zada", "zade", "ova", "eva", "ov", "ev", "i")
_MIN_STEM = 4
_VOWEL_FOLD = str.maketrans("oe", "ai")
_VOWELS = frozenset("aeiou")

_PartialDate = tuple[int, int | None, int | None]
_Pair = tuple[float, int, int, int]  # (similarity, weight, query word bits, candidate word bits)
_first = itemgetter(0)


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    """A register record to screen against: its full name plus every variant (any script), and birth date."""

    record_id: str
    names: tuple[str, ...]
    birth_date: str | None
    keys: tuple[str, ...] | None = None  # `name_key` of each of `names`, when already known (stored by the register)


@dataclass(frozen=True, kw_only=True, slots=True)
class Match:
    """A candidate that reached `min_score`, with the name (as given in `Candidate.names`) that matched best."""

    record_id: str
    score: float
    name_score: float
    birth_date_score: float
    matched_name: str


# ---- names -----------------------------------------------------------------------------------------------------

@lru_cache(maxsize=1 << 15)
def _tokens(text: str) -> tuple[str, ...]:
    return tuple(name_key(text).split())


_FRENCH_CH_RE = re.compile(r"(?<![tsTS])(ch|CH|Ch|cH)")


def _query_tokens(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]:
    """The query's words, and for each the other readings worth trying: a Latin word with ``ch`` (not ``tch`` or
    ``sch``) may be a French romanisation, where ``ch`` is ш (Chodmon = Шодмон), while the key reads it as ч/ҷ."""
    tokens = _tokens(text)
    none: tuple[tuple[str, ...], ...] = ((),) * len(tokens)
    if not text.isascii() or "ch" not in text.lower():
        return tokens, none
    other = _tokens(_FRENCH_CH_RE.sub("sh", text))
    if len(other) != len(tokens):
        return tokens, none
    return tokens, tuple((o,) if o != t else () for t, o in zip(tokens, other, strict=True))


@lru_cache(maxsize=1 << 14)
def _is_patronymic(token: str) -> bool:
    return token in _PATRONYMIC_WORDS or token.endswith(_PATRONYMIC_SUFFIXES)


@lru_cache(maxsize=1 << 15)
def surname_stem(token: str) -> str | None:
    """The word without a surname ending (-zoda/-zada/-zade, -i, -ov/-ev, -ova/-eva), vowels folded as in
    `_loose`; None if it has none or what is left is shorter than 4 letters. Раҳимзода, Рахимов, Rahimova and Раҳимӣ
    all give ``rahim``."""
    if _is_patronymic(token):
        return None
    for suffix in _SURNAME_SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= _MIN_STEM:
            return _loose(token[: -len(suffix)])
    return None


def _loose(word: str) -> str:
    """Russian vowel habits folded: о written а (Комрон / Камран), е and и swapped (Ҷамшед / Джамшид)."""
    return word.translate(_VOWEL_FOLD)


# ---- candidate retrieval keys ----------------------------------------------------------------------------------

_MAX_BLOCK = 40


def _skeleton(word: str) -> str:
    """The first letter (vowels folded) and the consonants after it: Halimov hlmv, Komron and Kamran kmrn."""
    return (_loose(word[0]) + "".join(c for c in word[1:] if c not in _VOWELS))[:_MAX_BLOCK]


@lru_cache(maxsize=1 << 15)
def _word_blocks(word: str, deletions: bool = True) -> frozenset[str]:
    if len(word) < 2:
        return frozenset()  # an initial: the other words find the candidate
    blocks: set[str] = set()
    stem = surname_stem(word)
    for form in (word, stem) if stem else (word,):
        skeleton = _skeleton(form)
        blocks.add(skeleton)
        if deletions and len(skeleton) >= 4:  # one consonant typo on either side still shares a key
            blocks.update(skeleton[:i] + skeleton[i + 1:] for i in range(len(skeleton)))
    return frozenset(blocks)


def _glued(tokens: tuple[str, ...]) -> list[str]:
    return [tokens[i] + tokens[i + 1] for i in range(len(tokens) - 1)]


def name_blocks(tokens: tuple[str, ...]) -> set[str]:
    """Retrieval keys of a register name (its `name_key` words): a candidate is scored when it shares one with the
    query. Each word gives its consonant skeleton, the skeleton of its stem when it has a surname ending, and those
    skeletons with one letter deleted (from 4 letters up); two adjacent words written together give their
    skeletons (Abdul Aziz / Abdulaziz)."""
    blocks: set[str] = set()
    for word in tokens:
        blocks |= _word_blocks(word)
    for glued in _glued(tokens):
        blocks |= _word_blocks(glued, False)
    return blocks


def _russian_ending(token: str) -> tuple[str, ...]:
    """A word ending in -of/-ef (the French -off/-eff for -ов/-ев, Moussoeff) read with -ov/-ev, for retrieval only
    (the scorer compares the words themselves)."""
    return (token[:-1] + "v",) if len(token) > 4 and token.endswith(("of", "ef")) else ()


def query_blocks(name: str) -> dict[str, int]:
    """The retrieval keys of a query name (as `name_blocks`, its other readings and a French -off/-eff read as -ov/-ev
    included), each with the position of the query word it comes from; {} if the name has no letters."""
    tokens, readings = _query_tokens(name)
    found: dict[str, int] = {}
    for i, token in enumerate(tokens):
        for form in (token, *readings[i], *_russian_ending(token)):
            for block in _word_blocks(form):
                found.setdefault(block, i)
    for i, glued in enumerate(_glued(tokens)):
        for block in _word_blocks(glued, False):
            found.setdefault(block, i)
    return found


def candidate_birth_years(birth_date: str | None, min_score: float) -> tuple[list[int], bool] | None:
    """The register birth years that can still reach `min_score` with a perfect name, and whether an unknown birth
    date can; None when every year can (no date in the query, or a low `min_score`). Raises `ValueError` for a
    malformed `birth_date`."""
    if birth_date is None:
        return None
    year = parse_partial_date(birth_date)[0]
    threshold = min_score - 0.1

    def reaches(date_score: float) -> bool:
        return NAME_WEIGHT * 100.0 + BIRTH_DATE_WEIGHT * date_score >= threshold

    if reaches(0.0):
        return None
    years = {year}
    if reaches(65.0):
        years.update((year - 1, year + 1))
    if reaches(55.0):
        digits = f"{year:04d}"
        for position in range(4):
            for digit in "0123456789":
                other = int(digits[:position] + digit + digits[position + 1:])
                if other:
                    years.add(other)
    return sorted(years), reaches(UNKNOWN_BIRTH_DATE_SCORE)


def _glue_range(length: int) -> tuple[int, int]:
    """Lengths a word can have and still reach _GLUED_MIN_RATIO with a word this long (the ratio of words of
    lengths a <= b is at most 200 * a / (a + b))."""
    factor = _GLUED_MIN_RATIO / (200.0 - _GLUED_MIN_RATIO)
    return math.ceil(length * factor - 1e-9), math.floor(length / factor + 1e-9)


def _initial_similarity(a: str, b: str) -> float:
    if a == b:
        return 100.0
    return _INITIAL_SCORE if a[0] == b[0] else 0.0


def _leftover_penalty(tokens: tuple[str, ...], used: int) -> float:
    penalty = 0.0
    for i, token in enumerate(tokens):
        if not used >> i & 1:
            penalty += _PATRONYMIC_PENALTY if _is_patronymic(token) else _EXTRA_WORD_PENALTY
    return penalty


class _Vocabulary:
    """The candidates' words in the three forms a query word is compared with: as they are, vowels folded, and the
    stems of those with a surname ending."""

    __slots__ = ("loose", "stem_of", "stems", "words")

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.loose = [_loose(w) for w in words]
        self.stems: list[str] = []
        self.stem_of: list[str] = []
        for w in words:
            stem = surname_stem(w)
            if stem:
                self.stems.append(stem)
                self.stem_of.append(w)

    def similarities(self, word: str, readings: tuple[str, ...], cutoff: float) -> dict[str, float]:
        if len(word) == 1:
            return {}  # an initial: compared one by one
        sims: dict[str, float] = {}

        def keep(found: list[tuple[str, float, int]], names: list[str], penalty: float) -> None:
            for _, ratio, index in found:
                if ratio > _TOKEN_FLOOR:
                    sim = (ratio - _TOKEN_FLOOR) * _TOKEN_SCALE - penalty
                    name = names[index]
                    if sim > sims.get(name, 0.0):
                        sims[name] = sim

        for reading, penalty in ((word, 0.0), *((r, _READING_PENALTY) for r in readings)):
            keep(process.extract(reading, self.words, scorer=fuzz.ratio, score_cutoff=cutoff, limit=None),
                 self.words, penalty)
            loose_cutoff = max(cutoff, _LOOSE_MIN_RATIO)
            keep(process.extract(_loose(reading), self.loose, scorer=fuzz.ratio, score_cutoff=loose_cutoff,
                                 limit=None), self.words, penalty + _LOOSE_PENALTY)
            stem = surname_stem(reading)
            if stem and self.stems:
                keep(process.extract(stem, self.stems, scorer=fuzz.ratio, score_cutoff=loose_cutoff, limit=None),
                     self.stem_of, penalty + _LOOSE_PENALTY)
        return sims


class _Query:
    """The query's words with their similarity to every word of the candidates, computed in one batch per word.

    Each query word keeps a map from candidate words (and from two adjacent candidate words written together) to
    their rescaled similarity with it, absent meaning 0; each pair of adjacent query words written together keeps
    one for single candidate words. A similarity is the best of the plain comparison, the comparison with Russian
    vowel habits folded (`_loose`) or of the two surname stems (`surname_stem`), less `_LOOSE_PENALTY`, and the
    comparison of the query word's other readings, less `_READING_PENALTY`.
    """

    __slots__ = ("_glued_words", "_patronymic", "_words", "tokens")

    def __init__(
        self, tokens: tuple[str, ...], vocabulary: list[str], readings: tuple[tuple[str, ...], ...] | None = None
    ) -> None:
        self.tokens = tokens
        forms = _Vocabulary(vocabulary)
        other = readings or ((),) * len(tokens)
        self._patronymic = [_is_patronymic(t) for t in tokens]
        # (word, length, bit, similarities, shortest and longest glued word it could match)
        self._words = [
            (t, len(t), 1 << i, forms.similarities(t, other[i], _TOKEN_FLOOR), *_glue_range(len(t)))
            for i, t in enumerate(tokens)
        ]
        glued = _glued(tokens)
        self._glued_words = [
            (len(g), 3 << i, forms.similarities(g, (), _GLUED_MIN_RATIO), *_glue_range(len(g)))
            for i, g in enumerate(glued)
        ]

    def pairs(self, candidate: tuple[str, ...]) -> list[_Pair]:
        """Every pair of words with a positive similarity, single words before glued ones."""
        pairs: list[_Pair] = []
        glued: list[_Pair] = []
        lengths = [len(c) for c in candidate]
        has_initial = 1 in lengths
        patronymic = [_is_patronymic(c) for c in candidate]
        for (q, q_len, q_bit, sims, glue_min, glue_max), q_patronymic in zip(self._words, self._patronymic,
                                                                              strict=True):
            ci = 0
            for c, c_len in zip(candidate, lengths, strict=True):
                if q_len == 1 or (has_initial and c_len == 1):
                    sim = _initial_similarity(q, c)
                else:
                    sim = sims.get(c, 0.0)
                    if sim > 0.0 and q_patronymic is not patronymic[ci]:
                        sim *= _PATRONYMIC_CROSS_FACTOR
                if sim > 0.0:
                    pairs.append((sim, q_len if q_len > c_len else c_len, q_bit, 1 << ci))
                ci += 1
            for ci in range(len(candidate) - 1):
                g_len = lengths[ci] + lengths[ci + 1]
                if glue_min <= g_len <= glue_max:
                    sim = sims.get(candidate[ci] + candidate[ci + 1], 0.0)
                    if sim >= _GLUED_MIN_SCORE:
                        glued.append((sim, q_len if q_len > g_len else g_len, q_bit, 3 << ci))
        for g_len, g_bits, sims, glue_min, glue_max in self._glued_words:
            for ci, c_len in enumerate(lengths):
                if glue_min <= c_len <= glue_max:
                    sim = sims.get(candidate[ci], 0.0)
                    if sim >= _GLUED_MIN_SCORE:
                        glued.append((sim, g_len if g_len > c_len else c_len, g_bits, 1 << ci))
        if glued:
            pairs += glued
        return pairs

    def similarity(self, candidate: tuple[str, ...], pairs: list[_Pair]) -> float:
        """Steps 2-5 of the module docstring, given `pairs(candidate)`."""
        q_all = (1 << len(self.tokens)) - 1
        c_all = (1 << len(candidate)) - 1
        q_used = c_used = 0
        weighted = 0.0
        weights = 0
        pairs.sort(key=_first, reverse=True)  # stable: on equal similarity the earlier-listed pair wins
        for sim, weight, q_bits, c_bits in pairs:
            if q_used & q_bits or c_used & c_bits:
                continue
            q_used |= q_bits
            c_used |= c_bits
            weighted += sim * weight
            weights += weight
            if q_used == q_all or c_used == c_all:
                break
        # Words still unpaired on both sides are paired at similarity 0, in order: they weigh in the average.
        if q_used != q_all and c_used != c_all:
            for qi, q in enumerate(self.tokens):
                if q_used >> qi & 1:
                    continue
                for ci, c in enumerate(candidate):
                    if not c_used >> ci & 1:
                        q_used |= 1 << qi
                        c_used |= 1 << ci
                        weights += max(len(q), len(c))
                        break
                if c_used == c_all:
                    break
        if not weighted:
            return 0.0
        penalty = _leftover_penalty(self.tokens, q_used) + _leftover_penalty(candidate, c_used)
        return max(0.0, weighted / weights - min(penalty, _MAX_PENALTY))


def _vocabulary(names: Iterable[tuple[str, ...]]) -> list[str]:
    words: dict[str, None] = {}
    for tokens in names:
        for i, token in enumerate(tokens):
            words[token] = None
            if i:
                words[tokens[i - 1] + token] = None
    return list(words)


def name_score(a: str, b: str) -> float:
    """Similarity (0-100, unrounded) of two names in any script, as `rank_candidates` computes it; 0 if either
    has no letters."""
    (query_tokens, readings), tokens = _query_tokens(a), _tokens(b)
    if not query_tokens or not tokens:
        return 0.0
    if query_tokens == tokens:
        return 100.0
    query = _Query(query_tokens, _vocabulary([tokens]), readings)
    return query.similarity(tokens, query.pairs(tokens))


# ---- birth dates -----------------------------------------------------------------------------------------------

@lru_cache(maxsize=1 << 14)
def _parse_or_none(value: str) -> _PartialDate | None:
    try:
        return parse_partial_date(value)
    except ValueError:
        return None


def _compatible(a: int | None, b: int | None) -> bool:
    return a is None or b is None or a == b


def _date_similarity(q: _PartialDate, c: _PartialDate) -> float:
    (qy, qm, qd), (cy, cm, cd) = q, c
    rest_compatible = _compatible(qm, cm) and _compatible(qd, cd)
    if qy == cy:
        if rest_compatible:
            if qm is None or cm is None:
                return 85.0
            return 100.0 if qd is not None and cd is not None else 92.0
        if qm is not None and cm is not None and qd is not None and cd is not None:
            if qm == cd and qd == cm:
                return 75.0
            if qm == cm or qd == cd:
                return 60.0
        return 40.0
    if abs(qy - cy) == 1:
        return 65.0 if rest_compatible else 30.0
    if rest_compatible and sum(x != y for x, y in zip(f"{qy:04d}", f"{cy:04d}", strict=True)) == 1:
        return 55.0
    return 0.0


def _birth_date_similarity(query: _PartialDate | None, candidate: str | None) -> float:
    parsed = _parse_or_none(candidate) if candidate is not None else None
    if query is None or parsed is None:
        return UNKNOWN_BIRTH_DATE_SCORE
    return _date_similarity(query, parsed)


def birth_date_score(query: str | None, candidate: str | None) -> float:
    """Birth-date agreement (0-100) as tabulated in the module docstring: `UNKNOWN_BIRTH_DATE_SCORE` if either is
    None or the candidate's value is not a partial date. Raises `ValueError` if `query` is malformed."""
    return _birth_date_similarity(parse_partial_date(query) if query is not None else None, candidate)


# ---- ranking ---------------------------------------------------------------------------------------------------

def rank_candidates(
    *,
    name: str,
    birth_date: str | None,
    candidates: Iterable[Candidate],
    min_score: float = 70.0,
    limit: int = 10,
) -> list[Match]:
    """Score every candidate against `name` and `birth_date` and return the best, highest first.

    ``score = 0.65 * name_score + 0.35 * birth_date_score`` (both parts are described in the module docstring);
    a candidate is scored by its best-matching name, the first one listed winning a tie. Scores are rounded to one
    decimal; matches whose rounded score is below `min_score` are dropped; the rest are sorted by descending score,
    then ascending ``record_id``, and cut to `limit`.

    A `name` without any letters matches nothing (an empty list). Raises `ValueError` if `birth_date` is not
    YYYY, YYYY-MM or YYYY-MM-DD, or if `limit` is negative. A candidate's unparsable birth date counts as unknown.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative: {limit}")
    query_date = parse_partial_date(birth_date) if birth_date is not None else None
    query_tokens, readings = _query_tokens(name)
    if not query_tokens or limit == 0:
        return []

    # 1. Birth dates first: a candidate whose date alone rules it out (a perfect name could not reach min_score)
    #    costs nothing more. Each remaining candidate keeps its distinct, non-empty names.
    threshold = min_score - 0.1  # below this, not even rounding reaches min_score
    rows: list[tuple[Candidate, float, list[tuple[str, tuple[str, ...]]]]] = []
    for candidate in candidates:
        date_score = _birth_date_similarity(query_date, candidate.birth_date)
        if NAME_WEIGHT * 100.0 + BIRTH_DATE_WEIGHT * date_score < threshold:
            continue
        distinct: dict[tuple[str, ...], str] = {}
        keys = candidate.keys
        for i, text in enumerate(candidate.names):
            tokens = tuple(keys[i].split()) if keys is not None else _tokens(text)
            if tokens and tokens not in distinct:
                distinct[tokens] = text
        if distinct:
            rows.append((candidate, date_score, [(text, tokens) for tokens, text in distinct.items()]))
    if not rows:
        return []

    # 2. Every query word against every distinct candidate word, in one rapidfuzz batch per query word.
    query = _Query(query_tokens, _vocabulary(tokens for _, _, names in rows for _, tokens in names), readings)

    # 3. Each candidate by its best name. A name's score is at most its best word pair's similarity, which lets
    #    hopeless names skip the alignment.
    matches: list[Match] = []
    for candidate, date_score, names in rows:
        best, best_name = -1.0, ""
        for text, tokens in names:
            if tokens == query_tokens:
                sim = 100.0
            else:
                pairs = query.pairs(tokens)
                if pairs:
                    bound = max(pairs, key=_first)[0]
                    if bound <= best or NAME_WEIGHT * bound + BIRTH_DATE_WEIGHT * date_score < threshold:
                        continue
                    sim = query.similarity(tokens, pairs)
                else:
                    sim = 0.0
            if sim > best:
                best, best_name = sim, text
                if sim >= 100.0:
                    break
        if best < 0.0:
            continue
        score = round(NAME_WEIGHT * best + BIRTH_DATE_WEIGHT * date_score, 1)
        if score < min_score:
            continue
        matches.append(Match(record_id=candidate.record_id, score=score, name_score=round(best, 1),
                             birth_date_score=round(date_score, 1), matched_name=best_name))
    matches.sort(key=lambda m: (-m.score, m.record_id))
    return matches[:limit]
