"""Script-independent keys: names across Tajik/Russian Cyrillic and Latin, document numbers, partial dates."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from exchange.register.transliteration import document_key, name_key, name_tokens, parse_partial_date

# ---- name_key ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spellings",
    [
        pytest.param(
            ["Гулмурод Халимов", "Гульмурод Халимов", "Gulmurod Khalimov", "Gulmurod Halimov", "Gulmurod Xalimov",
             "Ghulmurod Khalimov", "Ғулмурод Ҳалимов", "GULMUROD  HALIMOV", " gulmurod\thalimov "],
            id="gulmurod-halimov",
        ),
        pytest.param(["Ҷӯрабек", "Джурабек", "Jurabek", "Dzhurabek", "Djurabek", "Jūrabek"], id="jurabek"),
        # one per Tajik letter: ғ ӣ қ ӯ ҳ ҷ
        pytest.param(["Ғафуров", "Гафуров", "Ghafurov", "Gafurov", "Ğafurov"], id="ghain"),
        pytest.param(["Алӣ", "Али", "Ali", "Aly", "Alī"], id="i-macron"),
        pytest.param(["Қодиров", "Кодиров", "Qodirov", "Kodirov"], id="qaf"),
        pytest.param(["Рӯзиев", "Рузиев", "Ruziev", "Ruziyev", "Rūziev"], id="u-macron"),
        pytest.param(["Ҳасанов", "Хасанов", "Hasanov", "Khasanov", "Xasanov"], id="ha"),
        pytest.param(["Ҷамшед", "Джамшед", "Жамшед", "Jamshed", "Dzhamshed", "Djamshed", "Zhamshed"], id="jim"),
        # Russian letters and romanisations
        pytest.param(["Юсуф", "Yusuf", "Iusuf", "Yousuf"], id="yu"),
        pytest.param(["Якубов", "Yakubov", "Iakubov"], id="ya"),
        pytest.param(["Евгений", "Yevgeniy", "Evgenii", "Evgeny"], id="ye-iy"),
        pytest.param(["Алиева", "Aliyeva", "Alieva"], id="iye"),
        pytest.param(["Муллоев", "Mulloev", "Muloev"], id="doubled"),
        pytest.param(["Мухаммад", "Муҳаммад", "Muhammad", "Mukhammad", "Muhamad"], id="kh-doubled"),
        pytest.param(["Масъуд", "Mas'ud", "Mas’ud", "Masud", "Masood"], id="hard-sign-apostrophe"),
        pytest.param(["Шамсиддин", "Shamsiddin", "Šamsiddin"], id="sh"),
        pytest.param(["Щукин", "Shchukin", "Shukin"], id="shch"),
        pytest.param(["Цой", "Tsoy", "Tsoi", "Coi"], id="ts"),
        pytest.param(["Чоршанбе", "Chorshanbe", "Čoršanbe"], id="ch"),
        pytest.param(["Абдул-Азиз", "Abdulaziz", "Abdul-Aziz"], id="hyphen"),
        pytest.param(["Эргашев", "Ergashev"], id="e"),
        pytest.param(["Ёдгор", "Yodgor", "Iodgor"], id="yo"),
    ],
)
def test_spellings_of_one_name_share_a_key(spellings: list[str]) -> None:
    keys = {spelling: name_key(spelling) for spelling in spellings}
    assert len(set(keys.values())) == 1, keys


def test_key_shape() -> None:
    assert name_key("Гулмурод Халимов") == "gulmurod halimov"
    assert name_key("Ҷӯрабек") == "jurabek"
    assert name_key("  O'Neil, J.-P.  ") == "oneil j p"
    assert name_key("Halimov 2nd") == "halimov nd"
    assert name_key("") == ""
    assert name_key("123 - ./") == ""


def test_word_order_and_patronymic_stay_visible() -> None:
    assert name_tokens("Халимов Гулмурод Рахимович") == ["halimov", "gulmurod", "rahimovij"]
    assert name_tokens("Gulmurod Khalimov") == ["gulmurod", "halimov"]
    assert name_tokens("") == []


@pytest.mark.parametrize(
    ("a", "b"),
    [("Гулмурод Халимов", "Гулмурод Каримов"), ("Фарҳод", "Гулмурод"), ("Саидов", "Шарипов"), ("Ali", "Olim")],
)
def test_different_names_keep_different_keys(a: str, b: str) -> None:
    assert name_key(a) != name_key(b)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40) | st.text(alphabet="абвгдеёжзийклмнопрстуфхцчшщъыьэюяғӣқӯҳҷҶҲ kxhyqwcjdz'-", max_size=40))
@example("kkh")
@example("Iie")
@example("dddzzhh")
def test_name_key_is_idempotent_and_total(text: str) -> None:
    key = name_key(text)
    assert name_key(key) == key
    assert key == key.strip() and "  " not in key
    assert name_tokens(text) == key.split()


# ---- document_key --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("AB1234567", "AB1234567"),
        ("ab 123-45.67", "AB1234567"),
        ("АВ 1234567", "AB1234567"),  # Cyrillic А and В
        ("ав1234567", "AB1234567"),  # Cyrillic, lower case
        ("ЕКМНОРСТХУ/01", "EKMHOPCTXY01"),
        ("400 123-456", "400123456"),
        ("４００１２３４５６", "400123456"),  # full-width digits
        ("N\u200b01", "N01"),  # zero-width space
    ],
)
def test_document_key(raw: str, key: str) -> None:
    assert document_key(raw) == key


def test_document_key_keeps_distinct_numbers_distinct() -> None:
    assert document_key("400123456") != document_key("400123457")
    assert document_key("ЖБ123") != document_key("AB123")  # Ж is not a look-alike: kept, so no false hit


# ---- parse_partial_date --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [("1988", (1988, None, None)), ("1988-04", (1988, 4, None)), ("1988-04-12", (1988, 4, 12)),
     ("2000-02-29", (2000, 2, 29))],
)
def test_parse_partial_date(value: str, parsed: tuple[int, int | None, int | None]) -> None:
    assert parse_partial_date(value) == parsed


@pytest.mark.parametrize(
    "value",
    ["1990-13", "1990-02-30", "1991-02-29", "90", "", "1990-00", "1990-01-00", "0000", "1990-3", "1990-03-4",
     "1990/03/14", "14.03.1990", " 1990", "1990\n", "19900314", "1990-03-14T00:00", "１９９０", "abcd"],
)
def test_parse_partial_date_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_partial_date(value)
