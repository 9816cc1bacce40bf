"""Storage codecs for key records and bundles: versions, lengths, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg._proto import storage_pb2
from securemsg.errors import DecodeError, UnsupportedVersionError, UsageError
from securemsg.records import key_storage as codec

U32 = st.integers(0, 2**32 - 1)
U64 = st.integers(0, 2**64 - 1)


def b(n: int) -> st.SearchStrategy[bytes]:
    return st.binary(min_size=n, max_size=n)


@settings(max_examples=50)
@given(st.builds(codec.IdentityKeyPairFields, b(33), b(32)))
def test_identity_round_trip(f: codec.IdentityKeyPairFields) -> None:
    assert codec.decode_identity_key_pair(codec.encode_identity_key_pair(f)) == f


@settings(max_examples=50)
@given(st.builds(codec.PreKeyRecordFields, U32, b(33), b(32)))
def test_pre_key_round_trip(f: codec.PreKeyRecordFields) -> None:
    assert codec.decode_pre_key_record(codec.encode_pre_key_record(f)) == f


@settings(max_examples=50)
@given(st.builds(codec.SignedPreKeyRecordFields, U32, U64, b(33), b(32), b(64)))
def test_signed_pre_key_round_trip(f: codec.SignedPreKeyRecordFields) -> None:
    assert codec.decode_signed_pre_key_record(codec.encode_signed_pre_key_record(f)) == f


@settings(max_examples=50)
@given(st.builds(codec.KyberPreKeyRecordFields, U32, U64, b(64), b(64)))
def test_kyber_pre_key_round_trip(f: codec.KyberPreKeyRecordFields) -> None:
    data = codec.encode_kyber_pre_key_record(f)
    assert codec.decode_kyber_pre_key_record(data) == f
    assert len(data) < 160  # the seed, not the 3168-byte expanded key


def bundles() -> st.SearchStrategy[codec.PreKeyBundleFields]:
    one_time = st.none() | st.tuples(U32, b(33))

    def build(ot: tuple[int, bytes] | None, *rest: object) -> codec.PreKeyBundleFields:
        return codec.PreKeyBundleFields(
            rest[0],  # type: ignore[arg-type]
            rest[1],  # type: ignore[arg-type]
            None if ot is None else ot[0],
            None if ot is None else ot[1],
            *rest[2:],  # type: ignore[arg-type]
        )

    return st.builds(build, one_time, U32, U32, U32, b(33), b(64), b(33), U32, b(1569), b(64))


@settings(max_examples=30)
@given(bundles())
def test_bundle_round_trip(f: codec.PreKeyBundleFields) -> None:
    assert codec.decode_pre_key_bundle(codec.encode_pre_key_bundle(f)) == f


def test_one_time_prekey_id_zero_is_distinct_from_none() -> None:
    base = dict(
        registration_id=1,
        device_id=1,
        signed_pre_key_id=1,
        signed_pre_key_public=bytes(33),
        signed_pre_key_signature=bytes(64),
        identity_key=bytes(33),
        kyber_pre_key_id=1,
        kyber_pre_key_public=bytes(1569),
        kyber_pre_key_signature=bytes(64),
    )
    zero = codec.PreKeyBundleFields(pre_key_id=0, pre_key_public=bytes(33), **base)  # type: ignore[arg-type]
    none = codec.PreKeyBundleFields(pre_key_id=None, pre_key_public=None, **base)  # type: ignore[arg-type]
    assert codec.decode_pre_key_bundle(codec.encode_pre_key_bundle(zero)).pre_key_id == 0
    assert codec.decode_pre_key_bundle(codec.encode_pre_key_bundle(none)).pre_key_id is None
    with pytest.raises(UsageError):
        codec.encode_pre_key_bundle(
            codec.PreKeyBundleFields(pre_key_id=1, pre_key_public=None, **base)  # type: ignore[arg-type]
        )


@pytest.mark.parametrize("version", [0, 2, 99])
def test_other_record_versions_are_refused(version: int) -> None:
    pb = storage_pb2.PreKeyRecordStructure(
        version=version, id=1, public_key=bytes(33), private_key=bytes(32)
    )
    with pytest.raises(UnsupportedVersionError) as info:
        codec.decode_pre_key_record(pb.SerializeToString())
    assert info.value.version == version


def test_wrong_lengths_are_decode_errors() -> None:
    pb = storage_pb2.SignedPreKeyRecordStructure(
        version=1, id=1, public_key=bytes(33), private_key=bytes(32), signature=bytes(63)
    )
    with pytest.raises(DecodeError):
        codec.decode_signed_pre_key_record(pb.SerializeToString())
    bundle = storage_pb2.PreKeyBundleStructure(version=1, pre_key_public=bytes(33))
    with pytest.raises(DecodeError):
        codec.decode_pre_key_bundle(bundle.SerializeToString())
    with pytest.raises(DecodeError):
        codec.decode_identity_key_pair(b"\x08\x01\xff")


def test_encoders_refuse_misuse() -> None:
    with pytest.raises(UsageError):
        codec.encode_pre_key_record(codec.PreKeyRecordFields(-1, bytes(33), bytes(32)))
    with pytest.raises(UsageError):
        codec.encode_identity_key_pair(codec.IdentityKeyPairFields(bytes(32), bytes(32)))
    with pytest.raises(UsageError):
        codec.decode_pre_key_record("text")  # type: ignore[arg-type]


def test_private_material_not_in_repr() -> None:
    f = codec.SignedPreKeyRecordFields(1, 2, bytes(33), b"\xab" * 32, b"\xcd" * 64)
    assert "\\xab" not in repr(f) and "\\xcd" not in repr(f)
