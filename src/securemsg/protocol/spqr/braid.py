"""The ML-KEM Braid (SCKA) state machine of SPQR v1 (SPQR ``src/v1/chunked/``).

Theory of operation: in each epoch one party is *send_ek* (samples an ML-KEM-768 key pair and
streams ``header || MAC`` then ``ek_vector`` as erasure-coded chunks) and the other is
*send_ct* (encapsulates in two halves: ct1 as soon as the header is known, ct2 once it has
``ek_vector`` and the peer's acknowledgement of ct1). Roles swap every epoch. The initiator
(A2B) starts as send_ek in ``keys_unsampled``, the recipient (B2A) as send_ct in
``no_header_received``; both at epoch 1. Every state is an immutable object::

    send_ek: keys_unsampled -send-> keys_sampled -recv Ct1-> header_sent -ct1 complete->
             ct1_received -recv Ct2-> ek_sent_ct1_received -ct2 complete (Decaps)-> [send_ct, e+1]
    send_ct: no_header_received -hdr complete-> header_received -send (Encaps1)-> ct1_sampled
             -ek complete-> ek_received_ct1_sampled -Ct1Ack-> ct2_sampled
             ct1_sampled -EkCt1Ack, ek incomplete-> ct1_acknowledged -ek complete-> ct2_sampled
             ct1_sampled -EkCt1Ack completing ek-> ct2_sampled -msg of epoch e+1-> [send_ek, e+1]

Receive rule common to all states: a message from a later epoch is refused (except e+1 in
``ct2_sampled``, which is the cue to advance), an earlier one is ignored, and payload types a
state does not expect are ignored. Epoch secrets are emitted by send_ct on its first Ct1 send
and by send_ek when ct2 completes; the caller feeds them into the chain (Add Epoch).

``send`` returns ``(state, type, chunk_index, chunk, secret)``; ``recv`` returns
``(state, secret)``; ``secret`` is ``(epoch, 32 bytes)`` or None. ``recv`` raises
:class:`InvalidMessageError` (epoch from the future, bad MAC, ek not matching the header) and
never changes the state it was called on.

The state classes are slotted dataclasses, not frozen ones: a frozen dataclass costs four
times as much to build (``object.__setattr__`` per field) and a new state is built for almost
every message. They are immutable by convention, like every state object of
:mod:`securemsg.protocol`: nothing assigns to a field after construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Final

from securemsg.crypto import mlkem768
from securemsg.crypto.primitives import hkdf_sha256
from securemsg.errors import DecodeError, InvalidKeyError, InvalidMessageError
from securemsg.protocol.spqr.authenticator import MAC_LENGTH, Authenticator
from securemsg.protocol.spqr.erasure import Decoder, Encoder
from securemsg.protocol.spqr.message import MessageType, SpqrMessage
from securemsg.records.spqr_state import BraidRecord, DecoderRecord, EncoderRecord

if TYPE_CHECKING:
    from securemsg.crypto.rng import Rng

__all__ = [
    "BraidState",
    "Ct1Acknowledged",
    "Ct1Received",
    "Ct1Sampled",
    "Ct2Sampled",
    "EkReceivedCt1Sampled",
    "EkSentCt1Received",
    "HeaderReceived",
    "HeaderSent",
    "KeysSampled",
    "KeysUnsampled",
    "NoHeaderReceived",
    "braid_from_record",
    "initial_braid",
]

HEADER_LENGTH: Final = 64
EK_VECTOR_LENGTH: Final = 1152
CT1_LENGTH: Final = 960
CT2_LENGTH: Final = 128
SEED_LENGTH: Final = 64
HDR_PAYLOAD: Final = HEADER_LENGTH + MAC_LENGTH  # 96
CT2_PAYLOAD: Final = CT2_LENGTH + MAC_LENGTH  # 160
_SCKA_KEY: Final = b"Signal_PQCKA_V1_MLKEM768:SCKA Key"

Secret = tuple[int, bytes]
SendResult = tuple["BraidState", MessageType, int | None, bytes | None, Secret | None]
RecvResult = tuple["BraidState", Secret | None]

_EK_TYPES: Final = (MessageType.EK, MessageType.EK_CT1_ACK)


def _epoch_secret(epoch: int, shared_secret: bytes) -> bytes:
    return hkdf_sha256(shared_secret, None, _SCKA_KEY + epoch.to_bytes(8, "big"), 32)


def _future(msg: SpqrMessage) -> InvalidMessageError:
    return InvalidMessageError("SPQR: epoch not in valid range")


def _chunk(msg: SpqrMessage) -> tuple[int, bytes]:
    """The chunk of a chunk-carrying message type; refused (typed, also under ``python -O``)
    when the message lacks it."""
    ci, chunk = msg.chunk_index, msg.chunk
    if ci is None or chunk is None:
        raise InvalidMessageError("SPQR: erroneous data received")
    return ci, chunk


def _validate_ek(header: bytes, ek_vector: bytes) -> None:
    try:
        mlkem768.validate_ek_vector(header, ek_vector)
    except (InvalidKeyError, DecodeError) as exc:
        raise InvalidMessageError("SPQR: erroneous data received") from exc


class _Encaps:
    """An ML-KEM encapsulation state (secret) and, once computed, its stored form.

    Shared by the successive braid states of one epoch, so the ~40 us serialization runs once
    per epoch rather than once per saved message. The memo lives and dies with the states that
    own the secret; it is never a module global. ``repr`` shows nothing of it.
    """

    __slots__ = ("_data", "state")

    def __init__(self, state: mlkem768.EncapsState) -> None:
        self.state = state
        self._data: bytes | None = None

    def to_bytes(self) -> bytes:
        data = self._data
        if data is None:
            data = self._data = self.state.to_bytes()
        return data

    def __repr__(self) -> str:
        return "_Encaps(...)"


def _make_ct2(
    epoch: int, auth: Authenticator, es: _Encaps, ek_vector: bytes, ct1: bytes
) -> Ct2Sampled:
    ct2 = mlkem768.encaps2(es.state, ek_vector)
    mac = auth.mac_ct(epoch, ct1 + ct2)
    return Ct2Sampled(epoch, auth, Encoder(ct2 + mac))


@dataclass(slots=True)
class _Base:
    NAME: ClassVar[str] = ""
    KIND: ClassVar[int] = 0
    epoch: int
    auth: Authenticator = field(repr=False)

    @property
    def name(self) -> str:
        return self.NAME

    def _record(self, **kw: object) -> BraidRecord:
        return BraidRecord(
            self.KIND,
            self.epoch,
            self.auth.root_key,
            self.auth.mac_key,
            **kw,  # type: ignore[arg-type]
        )


def _enc_rec(e: Encoder) -> EncoderRecord:
    return EncoderRecord(e.payload, e.next_index)


def _dec_rec(d: Decoder) -> DecoderRecord:
    return DecoderRecord(d.length, tuple(sorted(d.chunks.items())))


# ---------------------------------------------------------------------------- send_ek


@dataclass(slots=True)
class KeysUnsampled(_Base):
    NAME: ClassVar[str] = "keys_unsampled"
    KIND: ClassVar[int] = 1

    def send(self, rng: Rng) -> SendResult:
        kp = mlkem768.MlKem768KeyPair.from_seed(rng.random_bytes(SEED_LENGTH))
        header = kp.header
        enc = Encoder(header + self.auth.mac_hdr(self.epoch, header))
        enc, ci, chunk = enc.next_chunk()
        return KeysSampled(self.epoch, self.auth, kp, enc), MessageType.HDR, ci, chunk, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        return self, None

    def to_record(self) -> BraidRecord:
        return self._record()


@dataclass(slots=True)
class KeysSampled(_Base):
    NAME: ClassVar[str] = "keys_sampled"
    KIND: ClassVar[int] = 2
    keypair: mlkem768.MlKem768KeyPair = field(repr=False)
    sending_hdr: Encoder

    def send(self, rng: Rng) -> SendResult:
        enc, ci, chunk = self.sending_hdr.next_chunk()
        return (
            KeysSampled(self.epoch, self.auth, self.keypair, enc),
            MessageType.HDR,
            ci,
            chunk,
            None,
        )

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        if msg.epoch < self.epoch or msg.type is not MessageType.CT1:
            return self, None
        ci, chunk = _chunk(msg)
        dec = Decoder(CT1_LENGTH).add(ci, chunk)
        sending_ek = Encoder(self.keypair.ek_vector)
        return HeaderSent(self.epoch, self.auth, self.keypair, sending_ek, dec), None

    def to_record(self) -> BraidRecord:
        return self._record(kem_seed=self.keypair.seed, encoder=_enc_rec(self.sending_hdr))


@dataclass(slots=True)
class HeaderSent(_Base):
    NAME: ClassVar[str] = "header_sent"
    KIND: ClassVar[int] = 3
    keypair: mlkem768.MlKem768KeyPair = field(repr=False)
    sending_ek: Encoder
    receiving_ct1: Decoder

    def send(self, rng: Rng) -> SendResult:
        enc, ci, chunk = self.sending_ek.next_chunk()
        st = HeaderSent(self.epoch, self.auth, self.keypair, enc, self.receiving_ct1)
        return st, MessageType.EK, ci, chunk, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        if msg.epoch < self.epoch or msg.type is not MessageType.CT1:
            return self, None
        ci, chunk = _chunk(msg)
        dec = self.receiving_ct1.add(ci, chunk)
        ct1 = dec.decode()
        if ct1 is None:
            return HeaderSent(self.epoch, self.auth, self.keypair, self.sending_ek, dec), None
        return Ct1Received(self.epoch, self.auth, self.keypair, ct1, self.sending_ek), None

    def to_record(self) -> BraidRecord:
        return self._record(
            kem_seed=self.keypair.seed,
            encoder=_enc_rec(self.sending_ek),
            decoder=_dec_rec(self.receiving_ct1),
        )


@dataclass(slots=True)
class Ct1Received(_Base):
    NAME: ClassVar[str] = "ct1_received"
    KIND: ClassVar[int] = 4
    keypair: mlkem768.MlKem768KeyPair = field(repr=False)
    ct1: bytes = field(repr=False)
    sending_ek: Encoder

    def send(self, rng: Rng) -> SendResult:
        enc, ci, chunk = self.sending_ek.next_chunk()
        st = Ct1Received(self.epoch, self.auth, self.keypair, self.ct1, enc)
        return st, MessageType.EK_CT1_ACK, ci, chunk, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        if msg.epoch < self.epoch or msg.type is not MessageType.CT2:
            return self, None
        ci, chunk = _chunk(msg)
        dec = Decoder(CT2_PAYLOAD).add(ci, chunk)
        return EkSentCt1Received(self.epoch, self.auth, self.keypair, self.ct1, dec), None

    def to_record(self) -> BraidRecord:
        return self._record(
            kem_seed=self.keypair.seed, ct1=self.ct1, encoder=_enc_rec(self.sending_ek)
        )


@dataclass(slots=True)
class EkSentCt1Received(_Base):
    NAME: ClassVar[str] = "ek_sent_ct1_received"
    KIND: ClassVar[int] = 5
    keypair: mlkem768.MlKem768KeyPair = field(repr=False)
    ct1: bytes = field(repr=False)
    receiving_ct2: Decoder

    def send(self, rng: Rng) -> SendResult:
        return self, MessageType.CT1_ACK, None, None, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        if msg.epoch < self.epoch or msg.type is not MessageType.CT2:
            return self, None
        ci, chunk = _chunk(msg)
        dec = self.receiving_ct2.add(ci, chunk)
        payload = dec.decode()
        if payload is None:
            return EkSentCt1Received(self.epoch, self.auth, self.keypair, self.ct1, dec), None
        ct2, mac = payload[:CT2_LENGTH], payload[CT2_LENGTH:]
        ss = self.keypair.decapsulate(self.ct1, ct2)
        secret = _epoch_secret(self.epoch, ss)
        auth = self.auth.update(self.epoch, secret)
        auth.verify_ct(self.epoch, self.ct1 + ct2, mac)
        nxt = NoHeaderReceived(self.epoch + 1, auth, Decoder(HDR_PAYLOAD))
        return nxt, (self.epoch, secret)

    def to_record(self) -> BraidRecord:
        return self._record(
            kem_seed=self.keypair.seed, ct1=self.ct1, decoder=_dec_rec(self.receiving_ct2)
        )


# ---------------------------------------------------------------------------- send_ct


@dataclass(slots=True)
class NoHeaderReceived(_Base):
    NAME: ClassVar[str] = "no_header_received"
    KIND: ClassVar[int] = 6
    receiving_hdr: Decoder

    def send(self, rng: Rng) -> SendResult:
        return self, MessageType.NONE, None, None, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        if msg.epoch < self.epoch or msg.type is not MessageType.HDR:
            return self, None
        ci, chunk = _chunk(msg)
        dec = self.receiving_hdr.add(ci, chunk)
        payload = dec.decode()
        if payload is None:
            return NoHeaderReceived(self.epoch, self.auth, dec), None
        header, mac = payload[:HEADER_LENGTH], payload[HEADER_LENGTH:]
        self.auth.verify_hdr(self.epoch, header, mac)
        return HeaderReceived(self.epoch, self.auth, header, Decoder(EK_VECTOR_LENGTH)), None

    def to_record(self) -> BraidRecord:
        return self._record(decoder=_dec_rec(self.receiving_hdr))


@dataclass(slots=True)
class HeaderReceived(_Base):
    NAME: ClassVar[str] = "header_received"
    KIND: ClassVar[int] = 7
    header: bytes = field(repr=False)
    receiving_ek: Decoder

    def send(self, rng: Rng) -> SendResult:
        ct1, es, ss = mlkem768.encaps1(self.header, rng.random_bytes(32))
        secret = _epoch_secret(self.epoch, ss)
        auth = self.auth.update(self.epoch, secret)
        enc, ci, chunk = Encoder(ct1).next_chunk()
        st = Ct1Sampled(self.epoch, auth, self.header, _Encaps(es), ct1, enc, self.receiving_ek)
        return st, MessageType.CT1, ci, chunk, (self.epoch, secret)

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        return self, None

    def to_record(self) -> BraidRecord:
        return self._record(header=self.header, decoder=_dec_rec(self.receiving_ek))


@dataclass(slots=True)
class Ct1Sampled(_Base):
    NAME: ClassVar[str] = "ct1_sampled"
    KIND: ClassVar[int] = 8
    header: bytes = field(repr=False)
    encaps: _Encaps = field(repr=False)
    ct1: bytes = field(repr=False)
    sending_ct1: Encoder
    receiving_ek: Decoder

    def send(self, rng: Rng) -> SendResult:
        enc, ci, chunk = self.sending_ct1.next_chunk()
        st = Ct1Sampled(
            self.epoch, self.auth, self.header, self.encaps, self.ct1, enc, self.receiving_ek
        )
        return st, MessageType.CT1, ci, chunk, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        if msg.epoch < self.epoch or msg.type not in _EK_TYPES:
            return self, None
        ci, chunk = _chunk(msg)
        ack = msg.type is MessageType.EK_CT1_ACK
        dec = self.receiving_ek.add(ci, chunk)
        ek_vector = dec.decode()
        if ek_vector is None:
            if ack:
                st: BraidState = Ct1Acknowledged(
                    self.epoch, self.auth, self.header, self.encaps, self.ct1, dec
                )
            else:
                st = Ct1Sampled(
                    self.epoch,
                    self.auth,
                    self.header,
                    self.encaps,
                    self.ct1,
                    self.sending_ct1,
                    dec,
                )
            return st, None
        _validate_ek(self.header, ek_vector)
        if ack:
            return _make_ct2(self.epoch, self.auth, self.encaps, ek_vector, self.ct1), None
        st = EkReceivedCt1Sampled(
            self.epoch, self.auth, self.encaps, ek_vector, self.ct1, self.sending_ct1
        )
        return st, None

    def to_record(self) -> BraidRecord:
        return self._record(
            header=self.header,
            encaps_state=self.encaps.to_bytes(),
            ct1=self.ct1,
            encoder=_enc_rec(self.sending_ct1),
            decoder=_dec_rec(self.receiving_ek),
        )


@dataclass(slots=True)
class EkReceivedCt1Sampled(_Base):
    NAME: ClassVar[str] = "ek_received_ct1_sampled"
    KIND: ClassVar[int] = 9
    encaps: _Encaps = field(repr=False)
    ek_vector: bytes = field(repr=False)
    ct1: bytes = field(repr=False)
    sending_ct1: Encoder

    def send(self, rng: Rng) -> SendResult:
        enc, ci, chunk = self.sending_ct1.next_chunk()
        st = EkReceivedCt1Sampled(self.epoch, self.auth, self.encaps, self.ek_vector, self.ct1, enc)
        return st, MessageType.CT1, ci, chunk, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        if msg.epoch < self.epoch or msg.type not in (
            MessageType.CT1_ACK,
            MessageType.EK_CT1_ACK,
        ):
            return self, None
        st = _make_ct2(self.epoch, self.auth, self.encaps, self.ek_vector, self.ct1)
        return st, None

    def to_record(self) -> BraidRecord:
        return self._record(
            encaps_state=self.encaps.to_bytes(),
            ek_vector=self.ek_vector,
            ct1=self.ct1,
            encoder=_enc_rec(self.sending_ct1),
        )


@dataclass(slots=True)
class Ct1Acknowledged(_Base):
    NAME: ClassVar[str] = "ct1_acknowledged"
    KIND: ClassVar[int] = 10
    header: bytes = field(repr=False)
    encaps: _Encaps = field(repr=False)
    ct1: bytes = field(repr=False)
    receiving_ek: Decoder

    def send(self, rng: Rng) -> SendResult:
        return self, MessageType.NONE, None, None, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch > self.epoch:
            raise _future(msg)
        if msg.epoch < self.epoch or msg.type not in _EK_TYPES:
            return self, None
        ci, chunk = _chunk(msg)
        dec = self.receiving_ek.add(ci, chunk)
        ek_vector = dec.decode()
        if ek_vector is None:
            st = Ct1Acknowledged(self.epoch, self.auth, self.header, self.encaps, self.ct1, dec)
            return st, None
        _validate_ek(self.header, ek_vector)
        return _make_ct2(self.epoch, self.auth, self.encaps, ek_vector, self.ct1), None

    def to_record(self) -> BraidRecord:
        return self._record(
            header=self.header,
            encaps_state=self.encaps.to_bytes(),
            ct1=self.ct1,
            decoder=_dec_rec(self.receiving_ek),
        )


@dataclass(slots=True)
class Ct2Sampled(_Base):
    NAME: ClassVar[str] = "ct2_sampled"
    KIND: ClassVar[int] = 11
    sending_ct2: Encoder

    def send(self, rng: Rng) -> SendResult:
        enc, ci, chunk = self.sending_ct2.next_chunk()
        return Ct2Sampled(self.epoch, self.auth, enc), MessageType.CT2, ci, chunk, None

    def recv(self, msg: SpqrMessage) -> RecvResult:
        if msg.epoch == self.epoch + 1:
            return KeysUnsampled(msg.epoch, self.auth), None
        if msg.epoch > self.epoch:
            raise _future(msg)
        return self, None

    def to_record(self) -> BraidRecord:
        return self._record(encoder=_enc_rec(self.sending_ct2))


BraidState = (
    KeysUnsampled
    | KeysSampled
    | HeaderSent
    | Ct1Received
    | EkSentCt1Received
    | NoHeaderReceived
    | HeaderReceived
    | Ct1Sampled
    | EkReceivedCt1Sampled
    | Ct1Acknowledged
    | Ct2Sampled
)


def initial_braid(auth_key: bytes, a2b: bool) -> BraidState:
    """Epoch 1: the initiator is send_ek (keys_unsampled), the recipient send_ct."""
    auth = Authenticator.initial(auth_key)
    if a2b:
        return KeysUnsampled(1, auth)
    return NoHeaderReceived(1, auth, Decoder(HDR_PAYLOAD))


# ---------------------------------------------------------------------------- restore


def _need(value: bytes, length: int) -> bytes:
    if len(value) != length:
        raise DecodeError("SPQR state: field of wrong length")
    return value


def _encoder(rec: EncoderRecord | None, length: int) -> Encoder:
    if rec is None or len(rec.payload) != length:
        raise DecodeError("SPQR state: bad encoder")
    return Encoder(rec.payload, rec.next_index)


def _decoder(rec: DecoderRecord | None, length: int) -> Decoder:
    if rec is None or rec.payload_length != length:
        raise DecodeError("SPQR state: bad decoder")
    chunks: dict[int, bytes] = {}
    for index, data in rec.chunks:
        if index > 0xFFFF or len(data) != 32 or index in chunks:
            raise DecodeError("SPQR state: bad decoder chunk")
        chunks[index] = data
    return Decoder(length, chunks)


def _keypair(seed: bytes) -> mlkem768.MlKem768KeyPair:
    return mlkem768.MlKem768KeyPair.from_seed(_need(seed, SEED_LENGTH))


def _encaps_state(data: bytes) -> _Encaps:
    """Decode a stored encapsulation state. Its stored form is recomputed on the next save
    (a legacy byte-swapped state is written back in the current layout)."""
    try:
        state = mlkem768.EncapsState.from_bytes(data)
    except DecodeError:
        raise
    except (ValueError, InvalidKeyError) as exc:
        raise DecodeError("SPQR state: bad encapsulation state") from exc
    return _Encaps(state)


# Each state's restorer: (epoch, authenticator, record) -> the state, checking the fields it uses.
_Restore = Callable[[int, Authenticator, BraidRecord], BraidState]


def _restore_keys_sampled(e: int, auth: Authenticator, r: BraidRecord) -> BraidState:
    return KeysSampled(e, auth, _keypair(r.kem_seed), _encoder(r.encoder, HDR_PAYLOAD))


def _restore_header_sent(e: int, auth: Authenticator, r: BraidRecord) -> BraidState:
    return HeaderSent(
        e,
        auth,
        _keypair(r.kem_seed),
        _encoder(r.encoder, EK_VECTOR_LENGTH),
        _decoder(r.decoder, CT1_LENGTH),
    )


def _restore_ct1_received(e: int, auth: Authenticator, r: BraidRecord) -> BraidState:
    return Ct1Received(
        e,
        auth,
        _keypair(r.kem_seed),
        _need(r.ct1, CT1_LENGTH),
        _encoder(r.encoder, EK_VECTOR_LENGTH),
    )


def _restore_ek_sent_ct1_received(e: int, auth: Authenticator, r: BraidRecord) -> BraidState:
    return EkSentCt1Received(
        e,
        auth,
        _keypair(r.kem_seed),
        _need(r.ct1, CT1_LENGTH),
        _decoder(r.decoder, CT2_PAYLOAD),
    )


def _restore_header_received(e: int, auth: Authenticator, r: BraidRecord) -> BraidState:
    return HeaderReceived(
        e, auth, _need(r.header, HEADER_LENGTH), _decoder(r.decoder, EK_VECTOR_LENGTH)
    )


def _restore_ct1_sampled(e: int, auth: Authenticator, r: BraidRecord) -> BraidState:
    return Ct1Sampled(
        e,
        auth,
        _need(r.header, HEADER_LENGTH),
        _encaps_state(r.encaps_state),
        _need(r.ct1, CT1_LENGTH),
        _encoder(r.encoder, CT1_LENGTH),
        _decoder(r.decoder, EK_VECTOR_LENGTH),
    )


def _restore_ek_received_ct1_sampled(e: int, auth: Authenticator, r: BraidRecord) -> BraidState:
    return EkReceivedCt1Sampled(
        e,
        auth,
        _encaps_state(r.encaps_state),
        _need(r.ek_vector, EK_VECTOR_LENGTH),
        _need(r.ct1, CT1_LENGTH),
        _encoder(r.encoder, CT1_LENGTH),
    )


def _restore_ct1_acknowledged(e: int, auth: Authenticator, r: BraidRecord) -> BraidState:
    return Ct1Acknowledged(
        e,
        auth,
        _need(r.header, HEADER_LENGTH),
        _encaps_state(r.encaps_state),
        _need(r.ct1, CT1_LENGTH),
        _decoder(r.decoder, EK_VECTOR_LENGTH),
    )


# The stored state kind (each class's KIND) -> its restorer.
_RESTORE: Final[dict[int, _Restore]] = {
    KeysUnsampled.KIND: lambda e, auth, r: KeysUnsampled(e, auth),
    KeysSampled.KIND: _restore_keys_sampled,
    HeaderSent.KIND: _restore_header_sent,
    Ct1Received.KIND: _restore_ct1_received,
    EkSentCt1Received.KIND: _restore_ek_sent_ct1_received,
    NoHeaderReceived.KIND: lambda e, auth, r: NoHeaderReceived(
        e, auth, _decoder(r.decoder, HDR_PAYLOAD)
    ),
    HeaderReceived.KIND: _restore_header_received,
    Ct1Sampled.KIND: _restore_ct1_sampled,
    EkReceivedCt1Sampled.KIND: _restore_ek_received_ct1_sampled,
    Ct1Acknowledged.KIND: _restore_ct1_acknowledged,
    Ct2Sampled.KIND: lambda e, auth, r: Ct2Sampled(e, auth, _encoder(r.encoder, CT2_PAYLOAD)),
}


def braid_from_record(r: BraidRecord) -> BraidState:
    """Rebuild a braid state from its stored record.

    Raises:
        DecodeError: unknown state kind, epoch 0, or fields missing / of the wrong size.
    """
    if r.epoch < 1:
        raise DecodeError("SPQR state: epoch 0")
    auth = Authenticator(_need(r.auth_root_key, 32), _need(r.auth_mac_key, 32))
    restore = _RESTORE.get(r.state)
    if restore is None:
        raise DecodeError("SPQR state: unknown braid state")
    return restore(r.epoch, auth, r)
