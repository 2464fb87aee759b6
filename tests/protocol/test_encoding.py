"""The wire's base64url through pybase64 is the standard library's, byte for byte and refusal for refusal.

The oracle below is the strict decoder as it was written on `binascii` (strict mode, then the unused bits of the last
character checked by hand); `b64url` is compared with `base64.urlsafe_b64encode` without its padding.
"""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.protocol.encoding import b64url, b64url_decode_strict

_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")  # "+", "/" and "=" are not base64url: made invalid for binascii
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def stdlib_strict(text: str) -> bytes | None:
    """The decoded bytes if `text` is canonical base64url without padding, else None."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    if len(raw) % 4 == 1:
        return None
    try:
        data = binascii.a2b_base64(raw.translate(_TO_STD) + b"=" * (-len(raw) % 4), strict_mode=True)
    except binascii.Error:
        return None
    unused_bits = {0: 0, 2: 4, 3: 2}[len(raw) % 4]
    if unused_bits and _ALPHABET.index(chr(raw[-1])) & ((1 << unused_bits) - 1):
        return None
    return data


def ours(text: str | bytes) -> bytes | None:
    try:
        return b64url_decode_strict(text)
    except ValueError:
        return None


def edits(text: str) -> st.SearchStrategy[str]:
    """`text` with one character replaced, inserted or deleted, from the alphabet or from what must be refused."""
    position = st.integers(0, len(text))
    char = st.sampled_from(_ALPHABET + "+/= \n\t.\x00\x7fé\u0100")
    return st.one_of(
        st.tuples(position, char).map(lambda pc: text[:pc[0]] + pc[1] + text[pc[0] + 1:]),
        st.tuples(position, char).map(lambda pc: text[:pc[0]] + pc[1] + text[pc[0]:]),
        position.map(lambda p: text[:p] + text[p + 1:]),
    )


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300))
def test_b64url_is_the_standard_librarys(data: bytes) -> None:
    assert b64url(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    assert b64url_decode_strict(b64url(data)) == data


@pytest.mark.parametrize("size", [20_000, 20_001, 20_002, 200_000])
def test_large_bodies_round_trip_as_the_standard_library_writes_them(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    text = b64url(data)
    assert text == base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
    assert b64url_decode_strict(text) == data == stdlib_strict(text)
    assert ours(text[:-1] + "+") is None is stdlib_strict(text[:-1] + "+")


@settings(max_examples=2000, deadline=None)
@given(text=st.text(alphabet="AEQgwBb9-_+/= \n\x00é", max_size=16) | st.text(max_size=8))
def test_the_strict_decoder_refuses_what_the_standard_library_refuses(text: str) -> None:
    assert ours(text) == stdlib_strict(text)
    if text.isascii():
        assert ours(text.encode("ascii")) == ours(text)  # the body's parts are decoded as bytes


@settings(max_examples=1000, deadline=None)
@given(data=st.data())
def test_any_edit_of_an_encoding_is_decided_as_the_standard_library_decides(data: st.DataObject) -> None:
    text = b64url(data.draw(st.binary(max_size=100)))
    edited = data.draw(edits(text))
    assert ours(edited) == stdlib_strict(edited)


@pytest.mark.parametrize("text", ["AA==", "AAA=", "A", "AAAAA", "AB", "AAB", "+/8", "-_+", "AA\n", " AA", "A A",
                                  "AA=A", "=", "é", "AA\x00"])
def test_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not canonical base64url"):
        b64url_decode_strict(text)
    assert stdlib_strict(text) is None
