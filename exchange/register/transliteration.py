"""Script-independent keys for screening: names, travel-document numbers and partial birth dates.

Names of the same person reach the register in Tajik Cyrillic ("Ҷӯрабек Ҳалимов"), Russian Cyrillic ("Джурабек
Халимов") and several Latin romanisations ("Jurabek Khalimov", "Dzhurabek Halimov", "Djurabek Xalimov").
`name_key` reduces every one of them to the same lowercase Latin *phonetic skeleton*, so that exact and fuzzy
comparison work on one alphabet. The key is for matching only; it is never shown to anybody.

The key is built in five steps:

1. Unicode NFKC, then case folding (``"ＧＵＬ"`` -> ``"gul"``, ``"Ҷ"`` -> ``"ҷ"``).
2. Cyrillic -> Latin, one letter at a time, covering Russian and Tajik (and the few Uzbek, Kazakh and Ukrainian
   letters that turn up in Central Asian names): ``ғ gh, ӣ i, қ q, ӯ u, ҳ h, ҷ j, х kh, ж zh, ч ch, ш sh, щ shch,
   ц ts, й/ы y, ё yo, ю yu, я ya``; the soft and hard signs ``ь ъ`` disappear (in Tajik ``ъ`` is a glottal stop that
   Latin spellings mostly drop or write as an apostrophe). A few Latin letters with a háček or cedilla that stand for
   one of these sounds are expanded the same way (``š sh, č/ç ch, ž zh, ǰ j, ǧ/ğ gh, ş sh``); every other diacritic
   is removed (``ū u, ī i, ü u, ö o``).
3. Apostrophes of every kind, and hyphens, are dropped *inside* a word (``Mas'ud`` = ``Masud``, ``G'ulom`` =
   ``Gulom``, ``Abdul-Aziz`` = ``Abdulaziz``); every other non-letter (spaces, dots, commas, digits, ``_``) separates
   words, and words are joined by one space in their original order.
4. Equivalent Latin spellings are folded, longer spellings first (``dzh`` before ``zh``, ``shch`` before ``sh``):

   ===========================  ======  ==========================================================================
   spelling(s)                  key     why
   ===========================  ======  ==========================================================================
   ``dzh dj zh ch tch``, ``j``  ``j``   ҷ is written Ҷ / Дж / J / Dzh / Dj, sometimes Ч / Ch; Russian also writes
                                        Tajik ҷ as Ж ("Жамшед" for "Ҷамшед"). So ч, ҷ and ж all become ``j``.
   ``kh x h``                   ``h``   х and ҳ are kept apart in Tajik but merged in Russian (Х) and Latin
                                        (Kh / X / H are all used for both).
   ``gh``                       ``g``   ғ is Ғ / Г in Cyrillic and Gh / G / Ğ in Latin.
   ``q``                        ``k``   қ is Қ / К in Cyrillic and Q / K in Latin.
   ``y``                        ``i``   й, ы, ӣ and the glide of ё ю я е: Yusuf / Iusuf (ICAO), Aliyev / Aliev /
                                        Алиев, Yuriy / Iurii / Юрий.
   ``ie`` at word start         ``e``   Yevgeniy / Evgenii / Евгений (after ``y`` -> ``i``).
   ``shch``                     ``sh``  щ; ``sh`` itself is kept (ш is a distinct sound).
   ``c`` (not in ``ch``)        ``ts``  ц is Ts / C.
   ``ee``, ``oo``/``ou``        ``i``,  English and French spellings: Fareed = Farid, Masood = Masud,
                                ``u``   Mahmoud = Mahmud.
   ``ph``, ``w``, ``ck``        ``f``,  Rare, foreign spellings.
                                ``v``,
                                ``k``
   doubled Latin letters        single  Муллоев / Mulloev / Muloev, Мухаммад / Muhamad; also what is left of a
                                        folding (``kkh`` -> ``kh`` -> ``h``).
   ===========================  ======  ==========================================================================

5. Step 4 is repeated until nothing changes, so ``name_key`` is idempotent: the key of a key is the key itself.

The foldings deliberately merge sounds a careful transcription would keep apart (ч/ҷ/ж, х/ҳ, к/қ, г/ғ, all the
y/i glides): at a border screening a false candidate costs an officer a glance, a missed returnee costs far more.
Vowel differences that are real spelling variants (Рахмонов / Rakhmanov, Ҷӯрабек / Jorabek) are *not* folded —
that would merge too many distinct names; they are one edit apart and left to the fuzzy scorer in `matching`.
Letters of other scripts (Arabic, Greek, ...) are kept as they are after case folding, so such names still compare
equal to themselves.
"""

from __future__ import annotations

import datetime as _dt
import re
import unicodedata

__all__ = ["document_key", "name_key", "name_tokens", "parse_partial_date"]

# ---- names -----------------------------------------------------------------------------------------------------

_CYRILLIC_TO_LATIN: dict[str, str] = {
    # Russian alphabet
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "yo", "ж": "zh", "з": "z", "и": "i",
    "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "",
    "э": "e", "ю": "yu", "я": "ya",
    # Tajik letters
    "ғ": "gh", "ӣ": "i", "қ": "q", "ӯ": "u", "ҳ": "h", "ҷ": "j",
    # neighbours: Uzbek, Kazakh, Kyrgyz, Bashkir, Ukrainian, Belarusian, Serbian
    "ў": "u", "ү": "u", "ұ": "u", "ө": "o", "ә": "a", "ң": "ng", "һ": "h", "ҡ": "q", "ҙ": "z", "і": "i", "ї": "i",
    "є": "e", "ґ": "g", "ј": "j", "џ": "dzh", "ђ": "dj", "ћ": "ch", "љ": "l", "њ": "n", "ѕ": "dz",
    # Latin letters with a diacritic that stands for one of the sounds above, or that NFKD does not decompose
    "š": "sh", "ş": "sh", "ș": "sh", "č": "ch", "ç": "ch", "ž": "zh", "ǰ": "j", "ǧ": "gh", "ğ": "gh",
    "ı": "i", "ł": "l", "đ": "d", "ð": "d", "ø": "o", "æ": "ae", "œ": "oe", "þ": "th", "ħ": "h",
    # vanish inside a word: apostrophes, primes (ISO 9 soft/hard signs), hyphens and dashes
    "'": "", "`": "", "´": "", "ʹ": "", "ʺ": "", "ʻ": "", "ʼ": "", "ʽ": "", "ʾ": "", "ʿ": "", "‘": "", "’": "",
    "‛": "", "′": "", "″": "", "-": "", "‐": "", "‑": "", "‒": "", "–": "", "—": "", "−": "", "ˈ": "",
}
_TRANSLATE = str.maketrans(_CYRILLIC_TO_LATIN)

# Applied in this order, so that the longer spelling wins: "shch" before "sh"/"ch", "dzh" before "zh", "tch"/"ck"
# before "ch" and "c". The single letters are translated after the digraphs.
_LATIN_DIGRAPHS: tuple[tuple[str, str], ...] = (
    ("shch", "sh"),
    ("dzh", "j"), ("tch", "j"),
    ("dj", "j"), ("zh", "j"), ("ch", "j"),
    ("kh", "h"), ("gh", "g"), ("ph", "f"), ("ck", "k"),
    ("c", "ts"),
)
_LATIN_LETTERS = str.maketrans("xqwy", "hkvi")
_LATIN_LETTERS_BYTES = bytes.maketrans(b"xqwy", b"hkvi")
_ASCII_DROPPED = bytes(sorted(k for k, v in _TRANSLATE.items() if k < 128 and not v))  # what _TRANSLATE deletes
_LATIN_VOWELS: tuple[tuple[str, str], ...] = (("ee", "i"), ("oo", "u"), ("ou", "u"))
_DOUBLED_RE = re.compile(r"([a-z])\1+")
_INITIAL_IE_RE = re.compile(r"\bie")
# Matches exactly where _fold_latin would change something, i.e. the text is not folded yet.
_UNFOLDED_RE = re.compile(r"[cxqwy]|dj|zh|kh|gh|ph|ee|oo|ou|([a-z])\1|\bie")
_ASCII_SEPARATORS_RE = re.compile(r"[^a-z]+")
_SEPARATORS_RE = re.compile(r"[\W\d_]+")


def _fold_latin(text: str) -> str:
    """Step 4, once, on a text of lowercase words separated by single spaces."""
    for spelling, folded in _LATIN_DIGRAPHS:
        if spelling in text:
            text = text.replace(spelling, folded)
    if text.isascii():  # bytes.translate is several times faster
        text = text.encode("ascii").translate(_LATIN_LETTERS_BYTES).decode("ascii")
    else:
        text = text.translate(_LATIN_LETTERS)
    for spelling, folded in _LATIN_VOWELS:
        if spelling in text:
            text = text.replace(spelling, folded)
    if _DOUBLED_RE.search(text):
        text = _DOUBLED_RE.sub(r"\1", text)
    if "ie" in text:
        text = _INITIAL_IE_RE.sub("e", text)
    return text


def _words(text: str, separators: re.Pattern[str]) -> str:
    """The letter runs of `text` joined by single spaces."""
    if text.replace(" ", "").isalpha():  # the usual case, and much cheaper than the regular expression
        return " ".join(text.split())
    return separators.sub(" ", text).strip()


def _one_pass(text: str) -> str:
    """Steps 1-4, once."""
    if text.isascii():
        text = text.encode("ascii").translate(None, _ASCII_DROPPED).decode("ascii").lower()
        text = _words(text, _ASCII_SEPARATORS_RE)
    else:
        text = unicodedata.normalize("NFKC", text).casefold().translate(_TRANSLATE)
        if not text.isascii():
            text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
            text = unicodedata.normalize("NFC", text).translate(_TRANSLATE)
        text = _words(text, _SEPARATORS_RE)
    return _fold_latin(text)


def name_key(text: str) -> str:
    """The canonical lowercase Latin phonetic skeleton of a personal name in any script (see the module docstring).

    >>> name_key("Ҷӯрабек Ҳалимов") == name_key("Dzhurabek Khalimov") == name_key("Djurabek Xalimov")
    True
    >>> name_key("Гульмурод  ХАЛИМОВ")
    'gulmurod halimov'

    A text without letters gives ``""``.
    """
    key = _one_pass(text)
    for _ in range(8):  # step 5; converges in a round or two, the bound only guards against the unforeseen
        if key.isascii():
            if not _UNFOLDED_RE.search(key):
                break
            again = _fold_latin(key)
        else:
            again = _one_pass(key)
        if again == key:
            break
        key = again
    return key


def name_tokens(text: str) -> list[str]:
    """The words of ``name_key(text)``, in their original order."""
    return name_key(text).split()


# ---- travel documents ------------------------------------------------------------------------------------------

# Cyrillic (and Greek) capitals that look like Latin ones; passport series are typed in either layout.
_LOOKALIKES = str.maketrans({
    "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
    "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
    "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
})
_DOCUMENT_NOISE_RE = re.compile(r"[\s\-‐‑‒–—−./\\_]+")


def document_key(number: str) -> str:
    """Normalise a travel-document number for exact lookup.

    NFKC (full-width digits become ASCII), upper case, spaces / hyphens / dashes / dots / slashes / underscores
    removed, and Cyrillic (or Greek) letters that look like Latin ones mapped to them: ``"ав 123-45.67"`` and
    ``"AB1234567"`` give the same key. Other characters are kept, so distinct numbers stay distinct.
    """
    text = unicodedata.normalize("NFKC", number).upper()
    text = "".join(c for c in text if unicodedata.category(c) != "Cf")  # zero-width spaces and joiners
    return _DOCUMENT_NOISE_RE.sub("", text).translate(_LOOKALIKES)


# ---- partial dates ---------------------------------------------------------------------------------------------

_PARTIAL_DATE_RE = re.compile(r"(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?", re.ASCII)


def parse_partial_date(value: str) -> tuple[int, int | None, int | None]:
    """Parse ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` into ``(year, month or None, day or None)``.

    Raises `ValueError` for anything else: other separators or widths (``"1990/03"``, ``"1990-3"``, ``"90"``),
    surrounding whitespace, year 0000, a month outside 1-12, or a day that does not exist in that month
    (``"1990-02-30"``, ``"1991-02-29"``).
    """
    match = _PARTIAL_DATE_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"Not a partial date (YYYY, YYYY-MM or YYYY-MM-DD): {value!r}")
    year = int(match.group(1))
    month = int(match.group(2)) if match.group(2) is not None else None
    day = int(match.group(3)) if match.group(3) is not None else None
    try:
        _dt.date(year, 1 if month is None else month, 1 if day is None else day)
    except ValueError as e:
        raise ValueError(f"Not a real date: {value!r}") from e
    return year, month, day
