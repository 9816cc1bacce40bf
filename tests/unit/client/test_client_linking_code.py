"""The linking code a new device shows: format, round trip, and refusal of a mistyped code."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.client.devices import (
    LINKING_CODE_SCHEME,
    MAX_LINKING_CODE,
    format_linking_code,
    parse_linking_code,
)
from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.rng import SystemRng
from securemsg.errors import LinkingCodeError, UsageError


def _code() -> tuple[bytes, KeyPair, str]:
    address = os.urandom(16)
    pair = KeyPair.generate(SystemRng())
    return address, pair, format_linking_code(address, pair.public_key)


def test_round_trip_and_shape() -> None:
    address, pair, code = _code()
    assert code.startswith(LINKING_CODE_SCHEME + "?uuid=")
    assert code.isascii() and code.isprintable() and " " not in code
    parsed = parse_linking_code(code)
    assert parsed.address == address
    assert parsed.public_key.to_bytes() == pair.public_key.to_bytes()
    assert str(parsed) == code


def test_whitespace_and_hex_case_are_forgiven() -> None:
    address, _, code = _code()
    broken = "  " + code[:40] + "\n" + code[40:90] + " \t" + code[90:] + "\n"
    assert parse_linking_code(broken).address == address
    head, check = code.rsplit("&check=", 1)
    uuid_part = head.split("uuid=")[1].split("&")[0]
    upper = head.replace(uuid_part, uuid_part.upper()) + "&check=" + check.upper()
    assert parse_linking_code(upper).address == address


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "sgnl://linkdevice?uuid=abc&pub_key=xyz",
        LINKING_CODE_SCHEME + "?uuid=&pub_key=&check=",
        "x" * (MAX_LINKING_CODE + 1),
    ],
)
def test_not_a_code_is_malformed(text: str) -> None:
    with pytest.raises(LinkingCodeError) as err:
        parse_linking_code(text)
    assert err.value.reason == "malformed"


def test_non_str_is_malformed() -> None:
    with pytest.raises(LinkingCodeError):
        parse_linking_code(b"securemsg://linkdevice")  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=16, max_size=16), st.binary(min_size=32, max_size=32), st.data())
def test_any_single_character_typo_is_refused(
    address: bytes, seed: bytes, data: st.DataObject
) -> None:
    code = format_linking_code(address, PrivateKey.from_bytes(seed).public_key())
    start = code.index("?uuid=") + len("?uuid=")
    positions = [i for i in range(start, len(code)) if code[i] not in "&=-"]
    i = data.draw(st.sampled_from(positions))
    alphabet = "0123456789abcdefABCDEFghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ_"
    replacement = data.draw(st.sampled_from([c for c in alphabet if c.lower() != code[i].lower()]))
    typo = code[:i] + replacement + code[i + 1 :]
    with pytest.raises(LinkingCodeError) as err:
        parse_linking_code(typo)
    assert err.value.reason in ("checksum", "malformed")


def test_swapped_neighbours_are_refused() -> None:
    _, _, code = _code()
    key_at = code.index("pub_key=") + len("pub_key=")
    for i in range(key_at, key_at + 43):
        if code[i] != code[i + 1]:
            swapped = code[:i] + code[i + 1] + code[i] + code[i + 2 :]
            with pytest.raises(LinkingCodeError):
                parse_linking_code(swapped)


def test_a_key_that_is_not_a_public_key_is_malformed_even_with_a_good_checksum() -> None:
    import base64
    import hashlib
    import uuid

    address = os.urandom(16)
    key = b"\x07" + os.urandom(32)  # wrong key type byte
    check = hashlib.sha256(b"securemsg linking code v1" + address + key).digest()[:4].hex()
    text = (
        f"{LINKING_CODE_SCHEME}?uuid={uuid.UUID(bytes=address)}"
        f"&pub_key={base64.urlsafe_b64encode(key).rstrip(b'=').decode()}&check={check}"
    )
    with pytest.raises(LinkingCodeError) as err:
        parse_linking_code(text)
    assert err.value.reason == "malformed"


@pytest.mark.parametrize(
    "point",
    [
        bytes(32),  # 0
        (1).to_bytes(32, "little"),  # 1
        bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    ],
    ids=["zero", "one", "order-8"],
)
def test_a_small_order_key_is_refused_before_anything_is_asked_of_the_relay(point: bytes) -> None:
    """Such a key agrees to all zeros with every private key: sealing to it fails. It is
    refused when the code is read, so that approving it spends no linking code and does
    not replace one the relay issued for a real new device."""
    key = PublicKey.from_bytes(b"\x05" + point)
    code = format_linking_code(os.urandom(16), key)
    with pytest.raises(LinkingCodeError) as err:
        parse_linking_code(code)
    assert err.value.reason == "malformed"


def test_format_refuses_a_wrong_address_length() -> None:
    pair = KeyPair.generate(SystemRng())
    with pytest.raises(UsageError):
        format_linking_code(b"\x00" * 15, pair.public_key)
