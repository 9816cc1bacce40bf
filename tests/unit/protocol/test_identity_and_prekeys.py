"""Identity keys, prekey records and bundles: generation, signatures, persistence, repr."""

from __future__ import annotations

import pytest

from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import (
    DecodeError,
    InvalidKeyError,
    InvalidSignatureError,
    UnsupportedVersionError,
    UsageError,
)
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    generate_registration_id,
)

RNG = DeterministicRng(b"keys-tests")
ALICE = IdentityKeyPair.generate(RNG)
MALLORY = IdentityKeyPair.generate(RNG)
SPK = SignedPreKeyRecord.generate(7, ALICE, 1_700_000_000_000, RNG)
KPK = KyberPreKeyRecord.generate(9, ALICE, 1_700_000_000_001, RNG)
OPK = PreKeyRecord.generate(3, RNG)


def bundle(**kw: object) -> PreKeyBundle:
    args: dict[str, object] = {
        "registration_id": 1234,
        "device_id": 1,
        "pre_key_id": OPK.id,
        "pre_key_public": OPK.public_key,
        "signed_pre_key_id": SPK.id,
        "signed_pre_key_public": SPK.public_key,
        "signed_pre_key_signature": SPK.signature,
        "identity_key": ALICE.identity_key,
        "kyber_pre_key_id": KPK.id,
        "kyber_pre_key_public": KPK.public_key,
        "kyber_pre_key_signature": KPK.signature,
    }
    args.update(kw)
    return PreKeyBundle(**args)  # type: ignore[arg-type]


def test_identity_key_round_trip_and_equality() -> None:
    key = ALICE.identity_key
    assert len(key.to_bytes()) == 33 and key.to_bytes()[0] == 0x05
    assert IdentityKey.from_bytes(key.to_bytes()) == key
    assert hash(IdentityKey.from_bytes(key.to_bytes())) == hash(key)
    assert key != MALLORY.identity_key
    with pytest.raises(InvalidKeyError):
        IdentityKey.from_bytes(b"\x06" + bytes(32))


def test_identity_key_pair_persistence_and_signing() -> None:
    restored = IdentityKeyPair.from_bytes(ALICE.to_bytes())
    assert restored == ALICE
    sig = restored.sign(b"hello", RNG)
    ALICE.public_key.verify(b"hello", sig)
    with pytest.raises(InvalidSignatureError):
        MALLORY.public_key.verify(b"hello", sig)


def test_alternate_identity() -> None:
    sig = ALICE.sign_alternate_identity(MALLORY.identity_key, RNG)
    ALICE.identity_key.verify_alternate_identity(MALLORY.identity_key, sig)
    with pytest.raises(InvalidSignatureError):
        ALICE.identity_key.verify_alternate_identity(ALICE.identity_key, sig)


def test_registration_ids_are_14_bit_nonzero() -> None:
    rng = DeterministicRng(b"reg")
    ids = {generate_registration_id(rng) for _ in range(500)}
    assert all(1 <= i <= 0x3FFF for i in ids)
    assert len(ids) > 400


def test_registration_id_skips_zero() -> None:
    class Zeros:
        deterministic = True
        calls = 0

        def random_bytes(self, n: int) -> bytes:
            self.calls += 1
            return b"\xc0\x00" if self.calls == 1 else b"\x00\x05"

    assert generate_registration_id(Zeros()) == 5


def test_signed_prekey_signature_is_over_serialized_key() -> None:
    ALICE.public_key.verify(b"\x05" + SPK.public_key.raw, SPK.signature)
    assert SignedPreKeyRecord.from_bytes(SPK.to_bytes()) == SPK
    restored = SignedPreKeyRecord.from_bytes(SPK.to_bytes())
    assert restored.timestamp == 1_700_000_000_000
    assert restored.key_pair.private_key.to_bytes() == SPK.key_pair.private_key.to_bytes()


def test_kyber_prekey_signature_and_seed_persistence() -> None:
    pk = KPK.public_key.to_bytes()
    assert len(pk) == 1569 and pk[0] == 0x08
    ALICE.public_key.verify(pk, KPK.signature)
    restored = KyberPreKeyRecord.from_bytes(KPK.to_bytes())
    assert restored == KPK
    assert restored.public_key.to_bytes() == pk
    ss, ct = restored.public_key.encapsulate(RNG)
    assert KPK.key_pair.decapsulate(ct) == ss


def test_prekey_record_round_trip() -> None:
    restored = PreKeyRecord.from_bytes(OPK.to_bytes())
    assert restored == OPK and restored.public_key == OPK.public_key
    with pytest.raises(UsageError):
        PreKeyRecord.generate(2**32, RNG)
    with pytest.raises(UsageError):
        SignedPreKeyRecord.generate(1, ALICE, -1, RNG)


def test_bundle_verifies_and_round_trips() -> None:
    b = bundle()
    b.verify_signatures()
    assert PreKeyBundle.from_bytes(b.to_bytes()) == b
    nb = bundle(pre_key_id=None, pre_key_public=None)
    restored = PreKeyBundle.from_bytes(nb.to_bytes())
    assert restored.pre_key_id is None and restored.pre_key_public is None


def test_bundle_bad_signatures() -> None:
    with pytest.raises(InvalidSignatureError):
        bundle(identity_key=MALLORY.identity_key).verify_signatures()
    with pytest.raises(InvalidSignatureError):
        bundle(signed_pre_key_signature=KPK.signature).verify_signatures()
    with pytest.raises(InvalidSignatureError):
        bundle(kyber_pre_key_signature=SPK.signature).verify_signatures()
    other_spk = KeyPair.generate(RNG).public_key
    with pytest.raises(InvalidSignatureError):
        bundle(signed_pre_key_public=other_spk).verify_signatures()


@pytest.mark.parametrize(
    "kw",
    [
        {"device_id": 0},
        {"device_id": 128},
        {"pre_key_id": None},
        {"pre_key_public": None},
        {"registration_id": -1},
        {"kyber_pre_key_public": None},
    ],
)
def test_bundle_misuse(kw: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        bundle(**kw)


def test_decoders_reject_garbage_and_other_versions() -> None:
    for cls in (IdentityKeyPair, PreKeyRecord, SignedPreKeyRecord, KyberPreKeyRecord, PreKeyBundle):
        with pytest.raises(DecodeError):
            cls.from_bytes(b"\xff\xff")
        with pytest.raises(UnsupportedVersionError):
            cls.from_bytes(b"\x08\x02")


def test_repr_never_shows_private_material() -> None:
    secrets = [
        ALICE.private_key.to_bytes(),
        SPK.key_pair.private_key.to_bytes(),
        OPK.key_pair.private_key.to_bytes(),
        KPK.key_pair.seed,
    ]
    text = repr(ALICE) + repr(SPK) + repr(OPK) + repr(KPK) + repr(bundle())
    for s in secrets:
        assert s.hex() not in text
        assert repr(s)[2:-1] not in text
    assert "7" in repr(SPK)
