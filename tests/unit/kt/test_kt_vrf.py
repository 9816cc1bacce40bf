"""ECVRF-EDWARDS25519-SHA512-TAI against RFC 9381 Appendix B.3 (tests/vectors/rfc9381/)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from securemsg.crypto.ecvrf import VrfPrivateKey, VrfPublicKey, proof_to_hash
from securemsg.errors import KeyTransparencyDecodeError, KeyTransparencyProofError, UsageError

VECTORS = json.loads(
    (
        Path(__file__).resolve().parents[2]
        / "vectors"
        / "rfc9381"
        / "ecvrf_edwards25519_sha512_tai.json"
    ).read_text()
)["vectors"]
L = 2**252 + 27742317777372353535851937790883648493


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"example-{v['example']}")
def test_rfc9381_examples_prove_and_verify(vector: dict[str, str]) -> None:
    key = VrfPrivateKey(bytes.fromhex(vector["sk"]))
    alpha = bytes.fromhex(vector["alpha"])
    assert bytes(key.public_key).hex() == vector["pk"]
    assert key.prove(alpha).hex() == vector["pi"]
    assert key.hash(alpha).hex() == vector["beta"]
    public = VrfPublicKey(bytes.fromhex(vector["pk"]))
    assert public.verify(alpha, bytes.fromhex(vector["pi"])).hex() == vector["beta"]
    assert proof_to_hash(bytes.fromhex(vector["pi"])).hex() == vector["beta"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"example-{v['example']}")
def test_wrong_input_key_or_proof_is_refused(vector: dict[str, str]) -> None:
    public = VrfPublicKey(bytes.fromhex(vector["pk"]))
    alpha = bytes.fromhex(vector["alpha"])
    proof = bytes.fromhex(vector["pi"])
    with pytest.raises(KeyTransparencyProofError):
        public.verify(alpha + b"x", proof)
    other = VrfPrivateKey(bytes(32)).public_key
    with pytest.raises(KeyTransparencyProofError):
        other.verify(alpha, proof)
    for index in (0, 31, 32, 47, 48, 79):
        mutated = bytearray(proof)
        mutated[index] ^= 0x01
        with pytest.raises(KeyTransparencyProofError):
            public.verify(alpha, bytes(mutated))
    with pytest.raises(KeyTransparencyDecodeError):
        public.verify(alpha, proof[:79])


def test_s_is_reduced_modulo_l_as_akd_does() -> None:
    vector = VECTORS[0]
    proof = bytes.fromhex(vector["pi"])
    s = int.from_bytes(proof[48:], "little")
    assert s + L < 2**256
    unreduced = proof[:48] + (s + L).to_bytes(32, "little")
    public = VrfPublicKey(bytes.fromhex(vector["pk"]))
    assert public.verify(b"", unreduced).hex() == vector["beta"]


def test_bad_keys_are_refused() -> None:
    with pytest.raises(KeyTransparencyDecodeError):
        VrfPublicKey(bytes(31))
    with pytest.raises(KeyTransparencyDecodeError):
        VrfPublicKey(b"\x01" + bytes(31))  # the identity: small order
    with pytest.raises(KeyTransparencyDecodeError):
        VrfPublicKey(b"\xff" * 32)  # not canonical
    with pytest.raises(UsageError):
        VrfPrivateKey(bytes(16))


def test_gamma_outside_the_prime_order_subgroup_is_refused() -> None:
    vector = VECTORS[0]
    proof = bytes.fromhex(vector["pi"])
    # The point of order 2 (y = -1) added to Gamma leaves the subgroup.
    from nacl.bindings import crypto_core_ed25519_add

    order_two = ((2**255 - 19) - 1).to_bytes(32, "little")
    shifted = crypto_core_ed25519_add(proof[:32], order_two)
    with pytest.raises(KeyTransparencyProofError):
        VrfPublicKey(bytes.fromhex(vector["pk"])).verify(b"", shifted + proof[32:])
