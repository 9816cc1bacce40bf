"""The interop scenarios: what two peers must agree on.

Theory of operation: a scenario is a function ``(ctx, x, y)`` where ``x`` initiates and ``y``
answers; the runner calls it twice per pairing (A initiates, then B initiates). Each call gets
fresh parties (labels and UUID names drawn from the scenario's own seeded ``random.Random``),
so a seed reproduces plaintexts, sizes and delivery orders. A scenario checks and, on the first
difference, raises :class:`Divergence` with a sentence saying what differed; it declares the
capabilities it needs from each side, and the runner reports "not supported" when a peer lacks
one (or answers ``unsupported``). Sizes come from :class:`Params`; the defaults are the full
run, tests pass smaller ones.

SPQR epochs are observed, not asked: the kit reads the ``pq_ratchet`` header of every message
each side sends (the sender's current epoch travels in it).
"""

from __future__ import annotations

import itertools
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from securemsg.interop.driver import PeerCrashed, PeerProcess, PeerRefusal, b64, unb64

if TYPE_CHECKING:
    from securemsg import PreKeySignalMessage

__all__ = [
    "SCENARIOS",
    "Divergence",
    "NotSupported",
    "Params",
    "Scenario",
    "ScenarioContext",
    "Side",
]

PREKEY = 3
WHISPER = 2
#: libsignal's MAX_FORWARD_JUMPS: a receiving chain skips at most this many messages.
FORWARD_JUMP_LIMIT = 25_000


class Divergence(Exception):
    """The peers disagree; the message says how, in words."""


class NotSupported(Exception):
    """A peer lacks what the scenario needs."""


@dataclass(frozen=True)
class Params:
    """Scenario sizes (the defaults are the full run)."""

    conversation_messages: int = 1000
    #: The first chain of the out-of-order run; its last message arrives first.
    out_of_order_burst: int = 300
    tamper_positions: int = 8
    large_message_bytes: int = 1024 * 1024
    spqr_round_trips: int = 200
    #: Messages each of the three group members sends.
    group_messages: int = 200
    restart_messages: int = 40
    fingerprint_iterations: int = 5200
    #: Identity pairs with random ids and iteration counts, besides the main pair.
    fingerprint_pairs: int = 10
    forward_jump: bool = True


@dataclass
class Party:
    """A party living in one peer."""

    side: Side
    label: str
    name: str
    device: int
    identity_key: bytes
    registration_id: int

    @property
    def address(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device}


class Side:
    """A peer process seen by one scenario call (fresh labels, typed helpers)."""

    def __init__(self, peer: PeerProcess, ctx: ScenarioContext, role: str) -> None:
        self.peer = peer
        self.ctx = ctx
        self.role = role

    @property
    def label(self) -> str:
        return self.peer.label

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        try:
            return self.peer.call(op, **args)
        except PeerRefusal as exc:
            if exc.kind == "unsupported":
                raise NotSupported(f"{self.label} does not support {op}: {exc.message}") from None
            raise

    def refusal(self, what: str, op: str, **args: Any) -> PeerRefusal:
        """Call ``op`` expecting a refusal; return it, or raise :class:`Divergence`."""
        try:
            self.call(op, **args)
        except PeerRefusal as exc:
            return exc
        raise Divergence(f"{self.label} ({self.role}) accepted {what}")

    def new_party(self, device: int = 1, name: str | None = None) -> Party:
        label = f"p{self.ctx.rng.getrandbits(48):012x}"
        name = name or str(uuid.UUID(int=self.ctx.rng.getrandbits(128), version=4))
        r = self.call("create_party", party=label, name=name, device=device)
        return Party(self, label, name, device, unb64(r["identity_key"]), int(r["registration_id"]))

    def bundle(self, party: Party, *, one_time: bool = True) -> dict[str, Any]:
        ids = self.ctx.next_ids()
        return self.call(
            "create_bundle",
            party=party.label,
            pre_key_id=ids[0] if one_time else None,
            signed_pre_key_id=ids[1],
            kyber_pre_key_id=ids[2],
        )

    def encrypt(self, party: Party, remote: Party, plaintext: bytes) -> tuple[int, bytes]:
        r = self.call("encrypt", party=party.label, remote=remote.address, plaintext=b64(plaintext))
        return int(r["type"]), unb64(r["body"])

    def decrypt(self, party: Party, remote: Party, kind: int, body: bytes) -> bytes:
        try:
            r = self.call(
                "decrypt", party=party.label, remote=remote.address, type=kind, body=b64(body)
            )
        except PeerRefusal as exc:
            raise Divergence(
                f"{self.label} ({self.role}) refused a valid message from {remote.side.label}: "
                f"{exc.kind}: {exc.message}"
            ) from None
        return unb64(r["plaintext"])

    def snapshot(self, party: Party, remote: Party) -> bytes:
        return unb64(self.call("snapshot", party=party.label, remote=remote.address)["state"])


@dataclass
class ScenarioContext:
    """What one scenario call gets: its seeded randomness, sizes, and a transcript."""

    rng: random.Random
    params: Params
    sent: list[tuple[str, int, bytes]] = field(default_factory=list)
    _ids: int = 0

    def next_ids(self) -> tuple[int, int, int]:
        self._ids += 1
        base = self.rng.randrange(1, 1 << 20) * 8 + self._ids
        return base, base + 1, base + 2

    def plaintext(self, size: int | None = None) -> bytes:
        n = self.rng.randrange(1, 200) if size is None else size
        return self.rng.randbytes(n)

    def varied_plaintext(self) -> bytes:
        """Empty, one byte, around the 16-byte AES block, or anything up to 400 bytes."""
        return self.rng.randbytes(self.rng.choice([0, 1, 15, 16, 17, self.rng.randrange(400)]))


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    needs: frozenset[str]
    run: Callable[[ScenarioContext, Side, Side], None]


SCENARIOS: dict[str, Scenario] = {}


def _scenario(
    name: str, description: str, needs: Sequence[str] = ()
) -> Callable[[Callable[[ScenarioContext, Side, Side], None]], Callable[..., None]]:
    def register(fn: Callable[[ScenarioContext, Side, Side], None]) -> Callable[..., None]:
        SCENARIOS[name] = Scenario(name, description, frozenset(needs), fn)
        return fn

    return register


# -- building blocks ---------------------------------------------------------------------------


def _deliver(
    ctx: ScenarioContext, sender: Side, sp: Party, receiver: Side, rp: Party, plaintext: bytes
) -> int:
    kind, body = sender.encrypt(sp, rp, plaintext)
    ctx.sent.append((sender.role, kind, body))
    got = receiver.decrypt(rp, sp, kind, body)
    if got != plaintext:
        raise Divergence(
            f"{receiver.label} decrypted a {len(plaintext)}-byte message from {sender.label} "
            f"to different bytes ({len(got)} bytes)"
        )
    return kind


def _first_contact(
    ctx: ScenarioContext, x: Side, y: Side, *, one_time: bool = True
) -> tuple[Party, Party, dict[str, Any], bytes]:
    """x processes a bundle of a fresh y party and sends the first (PreKey) message, which y
    decrypts. Returns the parties, the bundle and that message."""
    px = x.new_party()
    py = y.new_party()
    bundle = y.bundle(py, one_time=one_time)
    try:
        x.call("process_bundle", party=px.label, remote=py.address, bundle=bundle)
    except PeerRefusal as exc:
        raise Divergence(
            f"{x.label} refused {y.label}'s bundle: {exc.kind}: {exc.message}"
        ) from None
    first = _deliver(ctx, x, px, y, py, ctx.plaintext())
    if first != PREKEY:
        raise Divergence(f"{x.label}'s first message has type {first}, expected PreKey (3)")
    return px, py, bundle, ctx.sent[-1][2]


def _establish(
    ctx: ScenarioContext, x: Side, y: Side, *, one_time: bool = True
) -> tuple[Party, Party]:
    """x starts a session with y from y's bundle; one message each way."""
    px, py, _, _ = _first_contact(ctx, x, y, one_time=one_time)
    reply = _deliver(ctx, y, py, x, px, ctx.plaintext())
    if reply != WHISPER:
        raise Divergence(f"{y.label}'s answer has type {reply}, expected Whisper (2)")
    return px, py


def _prekey_message(sender: Side, body: bytes) -> PreKeySignalMessage:
    """``body`` parsed as a PreKeySignalMessage (securemsg's parser), or a divergence."""
    from securemsg import PreKeySignalMessage, SecureMsgError

    try:
        return PreKeySignalMessage.from_bytes(body)
    except SecureMsgError as exc:
        raise Divergence(f"{sender.label}'s PreKey message does not parse: {exc}") from None


def _check_unchanged(side: Side, party: Party, remote: Party, before: bytes, what: str) -> None:
    if side.snapshot(party, remote) != before:
        raise Divergence(f"{side.label} ({side.role}) changed its stored state after {what}")


# -- scenarios ---------------------------------------------------------------------------------


def _setup(ctx: ScenarioContext, x: Side, y: Side, *, one_time: bool) -> None:
    px, py, bundle, first = _first_contact(ctx, x, y, one_time=one_time)
    message = _prekey_message(x, first)
    used = (message.pre_key_id, message.signed_pre_key_id, message.kyber_pre_key_id)
    offered = (bundle["pre_key_id"], bundle["signed_pre_key_id"], bundle["kyber_pre_key_id"])
    if used != offered:
        raise Divergence(
            f"{x.label}'s PreKey message names prekeys (one-time, signed, Kyber) {used}; "
            f"{y.label}'s bundle offered {offered}"
        )
    for i in range(6):  # the session carries on both ways, each answer a new chain
        if i % 2 == 0:
            kind = _deliver(ctx, y, py, x, px, ctx.plaintext())
        else:
            kind = _deliver(ctx, x, px, y, py, ctx.plaintext())
        if kind != WHISPER:
            raise Divergence(f"message {i + 2} of a new session has type {kind}, not Whisper")


@_scenario(
    "setup_with_otpk",
    "session set-up from a bundle with a one-time prekey; the PreKey message names it",
)
def _setup_with(ctx: ScenarioContext, x: Side, y: Side) -> None:
    _setup(ctx, x, y, one_time=True)


@_scenario(
    "setup_without_otpk",
    "session set-up from a bundle without a one-time prekey; the PreKey message names none",
)
def _setup_without(ctx: ScenarioContext, x: Side, y: Side) -> None:
    _setup(ctx, x, y, one_time=False)


@_scenario("long_conversation", "a long conversation with random direction changes")
def _long(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """Runs of 1 to 40 messages (empty, block-sized and up to 400 bytes), the sender of each
    run drawn at random, so a side often goes on talking; every message is Whisper."""
    px, py = _establish(ctx, x, y)
    sent = 0
    total = ctx.params.conversation_messages
    while sent < total:
        run = min(ctx.rng.randint(1, 40), total - sent)
        forward = ctx.rng.random() < 0.5
        for _ in range(run):
            if forward:
                kind = _deliver(ctx, x, px, y, py, ctx.varied_plaintext())
            else:
                kind = _deliver(ctx, y, py, x, px, ctx.varied_plaintext())
            if kind != WHISPER:
                raise Divergence(f"message {sent} of the conversation has type {kind}")
            sent += 1


def _check_batch(
    receiver: Side,
    rp: Party,
    sp: Party,
    messages: Sequence[tuple[bytes, int, bytes]],
    what: str,
) -> None:
    for i, (plaintext, kind, body) in enumerate(messages):
        if receiver.decrypt(rp, sp, kind, body) != plaintext:
            raise Divergence(f"{receiver.label} decrypted message {i} of {what} wrong")


@_scenario(
    "out_of_order",
    "shuffled delivery across two chains; the last of a run first (inside the limits)",
)
def _out_of_order(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """Each side in turn sends a first chain of ``out_of_order_burst`` messages. Its last
    message arrives first (every earlier key is skipped and stored), then a shuffled third of
    the rest; the receiver answers, so the sender's next messages open a second chain (a
    quarter as long, at most 100); the rest of the first chain and all of the second arrive
    interleaved and shuffled. Then one message each way."""
    px, py = _establish(ctx, x, y)
    for sender, sp, receiver, rp in ((x, px, y, py), (y, py, x, px)):
        n = max(2, ctx.params.out_of_order_burst)
        first = [
            (p, *sender.encrypt(sp, rp, p)) for p in (ctx.varied_plaintext() for _ in range(n))
        ]
        rest = first[:-1]
        ctx.rng.shuffle(rest)
        early, late = rest[: len(rest) // 3], rest[len(rest) // 3 :]
        _check_batch(receiver, rp, sp, [first[-1]], "a chain's last message delivered first")
        _check_batch(receiver, rp, sp, early, "a shuffled chain")
        _deliver(ctx, receiver, rp, sender, sp, ctx.plaintext())  # turns the ratchet
        second = [
            (p, *sender.encrypt(sp, rp, p))
            for p in (ctx.varied_plaintext() for _ in range(max(1, min(n // 4, 100))))
        ]
        mixed = late + second
        ctx.rng.shuffle(mixed)
        _check_batch(receiver, rp, sp, mixed, "two chains interleaved and shuffled")
        _deliver(ctx, receiver, rp, sender, sp, ctx.plaintext())
        _deliver(ctx, sender, sp, receiver, rp, ctx.plaintext())


def _replay(side: Side, party: Party, remote: Party, kind: int, body: bytes, what: str) -> None:
    """``body`` again: refused, the receiver's snapshot unchanged."""
    before = side.snapshot(party, remote)
    side.refusal(
        what, "decrypt", party=party.label, remote=remote.address, type=kind, body=b64(body)
    )
    _check_unchanged(side, party, remote, before, f"refusing {what}")


@_scenario("duplicate", "a replayed message is refused, state unchanged", needs=("snapshot",))
def _duplicate(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """Replays of a PreKey message, of messages delivered in order, and of messages whose keys
    were skipped and then used; a skipped message delivered late still decrypts, once."""
    px = x.new_party()
    py = y.new_party()
    x.call("process_bundle", party=px.label, remote=py.address, bundle=y.bundle(py))
    kind, body = x.encrypt(px, py, ctx.plaintext())
    y.decrypt(py, px, kind, body)
    _replay(y, py, px, kind, body, "a replayed PreKey message")
    _deliver(ctx, y, py, x, px, ctx.plaintext())
    for sender, sp, receiver, rp in ((x, px, y, py), (y, py, x, px)):
        in_order = [sender.encrypt(sp, rp, ctx.plaintext()) for _ in range(3)]
        for kind, body in in_order:
            receiver.decrypt(rp, sp, kind, body)
            _replay(receiver, rp, sp, kind, body, "a replayed message")
        plaintexts = [ctx.plaintext() for _ in range(3)]
        later = [(p, *sender.encrypt(sp, rp, p)) for p in plaintexts]
        _check_batch(receiver, rp, sp, [later[2], later[0]], "a run delivered third, first")
        for what, kind, body in (
            ("a replayed message that skipped keys", *later[2][1:]),
            ("a replayed message whose key was skipped, then used", *later[0][1:]),
            ("a replayed in-order message after a skip", *in_order[-1]),
        ):
            _replay(receiver, rp, sp, kind, body, what)
        _check_batch(receiver, rp, sp, [later[1]], "a run, its skipped middle message late")
        _replay(receiver, rp, sp, *later[1][1:], "a replayed late message")
        _deliver(ctx, receiver, rp, sender, sp, ctx.plaintext())
    _deliver(ctx, x, px, y, py, ctx.plaintext())


def _flip(body: bytes, index: int, mask: int) -> bytes:
    mutated = bytearray(body)
    mutated[index] ^= mask
    return bytes(mutated)


def _tampered_whisper(ctx: ScenarioContext, body: bytes, count: int) -> list[tuple[str, bytes]]:
    """Tampered copies of a Whisper message: fixed places, ``count`` random bit flips, and
    wrong lengths and versions."""
    out = [
        ("a flipped version", _flip(body, 0, 0x10)),
        ("version 3", bytes([0x34]) + body[1:]),
        ("a flipped first protobuf byte", _flip(body, 1, 0x01)),
        ("a flipped MAC", _flip(body, len(body) - 1, 0x01)),
        ("a flipped last byte before the MAC", _flip(body, len(body) - 9, 0x01)),
        ("a truncated MAC", body[:-1]),
        ("an extra byte", body + b"\x00"),
        ("the version byte alone", body[:1]),
    ]
    for _ in range(count):
        index = ctx.rng.randrange(len(body))
        out.append(
            (f"a flipped bit at byte {index}", _flip(body, index, 1 << ctx.rng.randrange(8)))
        )
    return out


def _tampered_prekey(
    ctx: ScenarioContext, sender: Side, body: bytes, count: int
) -> list[tuple[str, bytes]]:
    """Tampered copies of a PreKey message: bit flips inside each authenticated part (the
    inner message, the base key and identity key past their type byte, the Kyber ciphertext;
    its registration id is not authenticated, libsignal accepts a changed one), and
    truncations."""
    message = _prekey_message(sender, body)
    out = [
        ("a flipped version", _flip(body, 0, 0x10)),
        ("a truncated MAC", body[:-1]),
        ("a message short by ten bytes", body[:-10]),
    ]
    for name, part, skip in (
        ("inner message", message.message.serialized, 0),
        ("base key", message.base_key.to_bytes(), 1),
        ("identity key", message.identity_key.to_bytes(), 1),
        ("Kyber ciphertext", message.kyber_ciphertext, 0),
    ):
        start = body.find(part)
        if start <= 0 or body.find(part, start + 1) != -1:
            raise Divergence(f"{sender.label}'s PreKey message does not hold its {name} once")
        for _ in range(max(1, count // 4)):
            index = ctx.rng.randrange(start + skip, start + len(part))
            mask = 1 << ctx.rng.randrange(8)
            out.append((f"a flipped bit in the {name} (byte {index})", _flip(body, index, mask)))
    return out


@_scenario("tamper", "tampered messages refused, receiver state unchanged", needs=("snapshot",))
def _tamper(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """Tampered copies of x's PreKey message (first contact: y has no session yet, and
    refusing must not consume a prekey, which the untampered message then needs), of x's next
    Whisper message, and of y's Whisper message; and a Whisper message presented as PreKey.
    Every one is refused with the receiver's snapshot unchanged, then the original decrypts."""
    px = x.new_party()
    py = y.new_party()
    x.call("process_bundle", party=px.label, remote=py.address, bundle=y.bundle(py))
    for sender, sp, receiver, rp in ((x, px, y, py), (x, px, y, py), (y, py, x, px)):
        plaintext = ctx.plaintext()
        kind, body = sender.encrypt(sp, rp, plaintext)
        count = ctx.params.tamper_positions
        if kind == PREKEY:
            variants = [(what, kind, m) for what, m in _tampered_prekey(ctx, sender, body, count)]
        else:
            variants = [(what, kind, m) for what, m in _tampered_whisper(ctx, body, count)]
            variants.append(("a Whisper message presented as PreKey", PREKEY, body))
        before = receiver.snapshot(rp, sp)
        for what, as_kind, mutated in variants:
            receiver.refusal(
                f"{what} in a type-{kind} message",
                "decrypt",
                party=rp.label,
                remote=sp.address,
                type=as_kind,
                body=b64(mutated),
            )
            _check_unchanged(receiver, rp, sp, before, f"refusing {what} in a type-{kind} message")
        if receiver.decrypt(rp, sp, kind, body) != plaintext:
            raise Divergence(f"{receiver.label} decrypted the untampered message wrong")
        _deliver(ctx, receiver, rp, sender, sp, ctx.plaintext())


def _send(
    ctx: ScenarioContext, sender: Side, sp: Party, rp: Party, count: int
) -> list[tuple[bytes, int, bytes]]:
    return [(p, *sender.encrypt(sp, rp, p)) for p in (ctx.plaintext() for _ in range(count))]


@_scenario(
    "session_reset",
    "archived sessions still decrypt in-flight messages; a new bundle starts a new session",
    needs=("archive", "session"),
)
def _reset(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """Each side in turn resets (processes a fresh bundle of the other while a session
    exists) with messages of the old session in flight both ways; they all decrypt late, from
    the archived state, and the new session carries on. Then y archives explicitly."""
    px, py = _establish(ctx, x, y)
    for resetter, pr, other, po in ((x, px, y, py), (y, py, x, px)):
        for _ in range(3):
            _deliver(ctx, resetter, pr, other, po, ctx.plaintext())
            _deliver(ctx, other, po, resetter, pr, ctx.plaintext())
        late_from_resetter = _send(ctx, resetter, pr, po, 4)
        late_from_other = _send(ctx, other, po, pr, 4)
        resetter.call("process_bundle", party=pr.label, remote=po.address, bundle=other.bundle(po))
        kind = _deliver(ctx, resetter, pr, other, po, ctx.plaintext())
        if kind != PREKEY:
            raise Divergence(f"{resetter.label}'s first message on the new session has type {kind}")
        _check_batch(resetter, pr, po, late_from_other, "the old session, arriving late")
        _check_batch(other, po, pr, late_from_resetter, "the old session, arriving late")
        for _ in range(3):
            _deliver(ctx, other, po, resetter, pr, ctx.plaintext())
            _deliver(ctx, resetter, pr, other, po, ctx.plaintext())
    # the receiver archives; the sender's next message still decrypts from the archived state
    in_flight_plain = ctx.plaintext()
    in_flight = x.encrypt(px, py, in_flight_plain)
    y.call("archive_session", party=py.label, remote=px.address)
    if y.call("has_session", party=py.label, remote=px.address).get("has_session") is not False:
        raise Divergence(f"{y.label} still has a current session after archive_session")
    if y.decrypt(py, px, *in_flight) != in_flight_plain:
        raise Divergence(f"{y.label} decrypted a message for its archived session wrong")
    # and a fresh bundle from the other side starts over
    y.call("process_bundle", party=py.label, remote=px.address, bundle=x.bundle(px))
    kind = _deliver(ctx, y, py, x, px, ctx.plaintext())
    if kind != PREKEY:
        raise Divergence(f"{y.label}'s first message after the reset has type {kind}")
    _deliver(ctx, x, px, y, py, ctx.plaintext())


@_scenario(
    "identity_change",
    "a changed identity is untrusted until trusted again",
    needs=("identity_change", "snapshot"),
)
def _identity_change(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """y reinstalls (a new identity key, same address). x refuses y's new bundle and y's new
    PreKey message as untrusted_identity, its state unchanged; once x trusts the new key, that
    same message decrypts, and so does a session from y's new bundle."""
    px, py = _establish(ctx, x, y)
    fresh = y.call("reset_identity", party=py.label)
    new_key = unb64(fresh["identity_key"])
    if new_key == py.identity_key:
        raise Divergence(f"{y.label}'s reset_identity kept the identity key")
    bundle = y.bundle(py)
    before = x.snapshot(px, py)
    refusal = x.refusal(
        "a bundle with a changed identity",
        "process_bundle",
        party=px.label,
        remote=py.address,
        bundle=bundle,
    )
    if refusal.kind != "untrusted_identity":
        raise Divergence(
            f"{x.label} refused a changed identity as {refusal.kind}, not untrusted_identity"
        )
    _check_unchanged(x, px, py, before, "refusing a changed identity")
    # the reinstalled y starts a session itself
    y.call("process_bundle", party=py.label, remote=px.address, bundle=x.bundle(px))
    plaintext = ctx.plaintext()
    kind, body = y.encrypt(py, px, plaintext)
    if kind != PREKEY:
        raise Divergence(f"{y.label}'s first message after reset_identity has type {kind}")
    refusal = x.refusal(
        "a PreKey message from a changed identity",
        "decrypt",
        party=px.label,
        remote=py.address,
        type=kind,
        body=b64(body),
    )
    if refusal.kind != "untrusted_identity":
        raise Divergence(
            f"{x.label} refused a PreKey message from a changed identity as {refusal.kind}, "
            "not untrusted_identity"
        )
    _check_unchanged(x, px, py, before, "refusing a PreKey message from a changed identity")
    x.call("trust", party=px.label, remote=py.address, identity_key=b64(new_key))
    if x.decrypt(px, py, kind, body) != plaintext:
        raise Divergence(f"{x.label} decrypted the refused PreKey message wrong after trust")
    _deliver(ctx, x, px, y, py, ctx.plaintext())
    x.call("process_bundle", party=px.label, remote=py.address, bundle=bundle)
    _deliver(ctx, x, px, y, py, ctx.plaintext())
    _deliver(ctx, y, py, x, px, ctx.plaintext())


@_scenario("large_message", "large plaintexts both ways")
def _large(ctx: ScenarioContext, x: Side, y: Side) -> None:
    px, py = _establish(ctx, x, y)
    size = ctx.params.large_message_bytes
    _deliver(ctx, x, px, y, py, ctx.plaintext(size))
    _deliver(ctx, y, py, x, px, ctx.plaintext(size))
    _deliver(ctx, x, px, y, py, b"")


@_scenario(
    "forward_jump",
    f"messages more than {FORWARD_JUMP_LIMIT} steps ahead (Double Ratchet or SPQR) are refused",
    needs=("encrypt_many", "snapshot"),
)
def _forward_jump(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """x sends counters 0..25001 on a fresh chain; y gets 25001 (refused), 0, 25001 again
    (refused: SPQR counts from 1, so its jump is one further), 25000, then 25001."""
    if not ctx.params.forward_jump:
        raise NotSupported("forward_jump is disabled by the run's parameters")
    px, py = _establish(ctx, x, y)
    plaintext = ctx.plaintext()
    last = FORWARD_JUMP_LIMIT + 1
    # x just received: its next message opens a new chain at index 0 for y
    r = x.call(
        "encrypt_many",
        timeout=600.0,
        party=px.label,
        remote=py.address,
        plaintext=b64(plaintext),
        count=last + 1,
        keep=[0, last - 1, last],
    )
    messages = {int(m["index"]): (int(m["type"]), unb64(m["body"])) for m in r["messages"]}
    if set(messages) != {0, last - 1, last}:
        raise Divergence(f"{x.label}'s encrypt_many returned indices {sorted(messages)}")
    for step, (index, accept) in enumerate(
        ((last, False), (0, True), (last, False), (last - 1, True), (last, True))
    ):
        kind, body = messages[index]
        if accept:
            if y.decrypt(py, px, kind, body) != plaintext:
                raise Divergence(f"{y.label} decrypted counter {index} wrong")
            continue
        before = y.snapshot(py, px)
        y.refusal(
            f"counter {index} at step {step + 1} (a jump past the limit)",
            "decrypt",
            party=py.label,
            remote=px.address,
            type=kind,
            body=b64(body),
        )
        _check_unchanged(y, py, px, before, f"refusing counter {index} too far ahead")
    _deliver(ctx, y, py, x, px, ctx.plaintext())


def _spqr_epoch(kind: int, body: bytes) -> int:
    from securemsg import PreKeySignalMessage, SignalMessage
    from securemsg.protocol.spqr.message import decode_message

    inner = (
        PreKeySignalMessage.from_bytes(body).message
        if kind == PREKEY
        else SignalMessage.from_bytes(body)
    )
    if not inner.pq_ratchet:
        raise Divergence("a message carries no SPQR header (pq_ratchet is empty)")
    return int(decode_message(inner.pq_ratchet).epoch)


@_scenario("spqr_epochs", "SPQR epochs advance in both directions, in step")
def _spqr(ctx: ScenarioContext, x: Side, y: Side) -> None:
    ctx.sent.clear()
    px, py = _establish(ctx, x, y)
    for _ in range(ctx.params.spqr_round_trips):
        _deliver(ctx, x, px, y, py, ctx.plaintext(16))
        _deliver(ctx, y, py, x, px, ctx.plaintext(16))
    highest: dict[str, int] = {}
    for role in (x.role, y.role):
        epochs = [_spqr_epoch(k, b) for r, k, b in ctx.sent if r == role]
        if epochs[0] != 1:
            raise Divergence(f"the {role} side's first SPQR epoch is {epochs[0]}, not 1")
        for a, b in itertools.pairwise(epochs):
            if b not in (a, a + 1):
                raise Divergence(f"the {role} side's SPQR epoch went from {a} to {b}")
        highest[role] = epochs[-1]
    if min(highest.values()) < 2:
        raise Divergence(f"SPQR epochs did not advance ({highest})")
    if abs(highest[x.role] - highest[y.role]) > 1:
        raise Divergence(f"SPQR epochs are out of step ({highest})")


@_scenario("restart", "both peers restart from storage mid-conversation", needs=("restart",))
def _restart(ctx: ScenarioContext, x: Side, y: Side) -> None:
    px, py = _establish(ctx, x, y)
    n = max(2, ctx.params.restart_messages)
    for i in range(n):
        if i % 2 == 0:
            _deliver(ctx, x, px, y, py, ctx.plaintext())
        else:
            _deliver(ctx, y, py, x, px, ctx.plaintext())
    in_flight_plain = ctx.plaintext()
    in_flight = x.encrypt(px, py, in_flight_plain)
    x.call("restart")
    y.call("restart")
    if y.decrypt(py, px, *in_flight) != in_flight_plain:
        raise Divergence(f"{y.label} decrypted a message sent before its restart wrong")
    for i in range(n):
        if i % 2 == 0:
            _deliver(ctx, y, py, x, px, ctx.plaintext())
        else:
            _deliver(ctx, x, px, y, py, ctx.plaintext())


def _issue(side: Side, sender: Party, *, expiration_ms: int) -> tuple[bytes, bytes]:
    issuer = f"i{side.ctx.rng.getrandbits(48):012x}"
    root = unb64(
        side.call("ss_create_issuer", issuer=issuer, key_id=side.ctx.rng.randrange(1, 1 << 16))[
            "trust_root"
        ]
    )
    cert = side.call(
        "ss_issue_sender_certificate",
        issuer=issuer,
        sender_uuid=sender.name,
        sender_device=sender.device,
        identity_key=b64(sender.identity_key),
        expiration_ms=expiration_ms,
    )["certificate"]
    return root, unb64(cert)


@_scenario(
    "sealed_v1",
    "sealed sender v1 with certificates issued by either side; bad certificates refused",
    needs=("sealed_v1", "snapshot"),
)
def _sealed_v1(ctx: ScenarioContext, x: Side, y: Side) -> None:
    px, py = _establish(ctx, x, y)
    now = int(time.time() * 1000)
    later = now + 3_600_000
    for issuer in (x, y):
        root, cert = _issue(issuer, px, expiration_ms=later)
        plaintext = ctx.plaintext()
        body = unb64(
            x.call(
                "ss_encrypt",
                party=px.label,
                remote=py.address,
                plaintext=b64(plaintext),
                sender_certificate=b64(cert),
            )["body"]
        )
        try:
            r = y.call(
                "ss_decrypt", party=py.label, body=b64(body), trust_root=b64(root), now_ms=now
            )
        except PeerRefusal as exc:
            raise Divergence(
                f"{y.label} refused a sealed message with a certificate issued by "
                f"{issuer.label}: {exc.kind}: {exc.message}"
            ) from None
        if unb64(r["plaintext"]) != plaintext or r.get("sender") != px.address:
            raise Divergence(f"{y.label} opened a sealed message to the wrong sender or bytes")
    other_root, _ = _issue(y, px, expiration_ms=later)
    bad: tuple[tuple[str, bytes | None, int, int], ...] = (
        ("a certificate from another trust root", other_root, later, now),
        ("an expired certificate", None, now - 1, now),
    )
    for what, bad_root, cert_expiry, when in bad:
        good_root, cert = _issue(x, px, expiration_ms=cert_expiry)
        body = x.call(
            "ss_encrypt",
            party=px.label,
            remote=py.address,
            plaintext=b64(ctx.plaintext()),
            sender_certificate=b64(cert),
        )["body"]
        before = y.snapshot(py, px)
        refusal = y.refusal(
            f"a sealed message with {what}",
            "ss_decrypt",
            party=py.label,
            body=body,
            trust_root=b64(bad_root or good_root),
            now_ms=when,
        )
        if refusal.kind != "refused":
            raise Divergence(f"{y.label} refused {what} as {refusal.kind}, not refused")
        _check_unchanged(y, py, px, before, f"refusing {what}")
    _deliver(ctx, x, px, y, py, ctx.plaintext())


@_scenario(
    "sealed_v2",
    "sealed sender v2 to a recipient in each peer: split alike by both, opened by both",
    needs=("sealed_v2", "sealed_v1", "groups"),
)
def _sealed_v2(ctx: ScenarioContext, x: Side, y: Side) -> None:
    px = x.new_party()
    recipients = [y.new_party(), x.new_party()]  # one in each peer
    for d in recipients:
        x.call("process_bundle", party=px.label, remote=d.address, bundle=d.side.bundle(d))
        _deliver(ctx, x, px, d.side, d, ctx.plaintext())
    dist = str(uuid.UUID(int=ctx.rng.getrandbits(128), version=4))
    skdm = x.call("group_create", party=px.label, distribution_id=dist)["skdm"]
    for d in recipients:
        d.side.call("group_process", party=d.label, sender=px.address, skdm=skdm)
    now = int(time.time() * 1000)
    root, cert = _issue(y, px, expiration_ms=now + 3_600_000)
    plaintext = ctx.plaintext()
    sent = x.call(
        "ss_multi_encrypt",
        party=px.label,
        distribution_id=dist,
        plaintext=b64(plaintext),
        sender_certificate=b64(cert),
        recipients=[d.address for d in recipients],
        group_id=b64(ctx.rng.randbytes(32)),
    )["body"]
    splits = [side.call("ss_multi_split", body=sent)["recipients"] for side in (x, y)]
    if splits[0] != splits[1]:
        raise Divergence(f"{x.label} and {y.label} split the v2 message differently")
    listed = [(r.get("service_id"), r.get("devices")) for r in splits[0]]
    if listed != [(d.name, [d.device]) for d in recipients]:
        raise Divergence(f"the v2 split lists {listed}, expected both recipients, device 1")
    for d, part in zip(recipients, splits[0], strict=True):
        try:
            r = d.side.call(
                "ss_decrypt", party=d.label, body=part["message"], trust_root=b64(root), now_ms=now
            )
        except PeerRefusal as exc:
            raise Divergence(
                f"{d.side.label} refused its v2 message: {exc.kind}: {exc.message}"
            ) from None
        if unb64(r["plaintext"]) != plaintext or r.get("sender") != px.address:
            raise Divergence(f"{d.side.label} opened its v2 message wrong")


@_scenario(
    "groups",
    "three members (two in the initiating peer) send sender-key messages; every other member "
    "receives them shuffled; a duplicate is refused",
    needs=("groups",),
)
def _groups(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """Members x1, x2 (in x) and y1 (in y) share one distribution id: each hands its SKDM to
    the other two and sends ``group_messages`` messages; each receiver gets the other two
    members' messages interleaved in one shuffled order (skipped keys stored and used on both
    implementations), then a replay of one of them, which it must refuse."""
    members = [x.new_party(), x.new_party(), y.new_party()]
    dist = str(uuid.UUID(int=ctx.rng.getrandbits(128), version=4))
    for sender in members:
        skdm = sender.side.call("group_create", party=sender.label, distribution_id=dist)["skdm"]
        for receiver in members:
            if receiver is not sender:
                receiver.side.call(
                    "group_process", party=receiver.label, sender=sender.address, skdm=skdm
                )
    sent: list[tuple[Party, int, bytes, str]] = []
    for sender in members:
        for i in range(ctx.params.group_messages):
            plaintext = ctx.plaintext()
            body = sender.side.call(
                "group_encrypt", party=sender.label, distribution_id=dist, plaintext=b64(plaintext)
            )["body"]
            sent.append((sender, i, plaintext, body))
    for receiver in members:
        theirs = [m for m in sent if m[0] is not receiver]
        ctx.rng.shuffle(theirs)
        for sender, i, plaintext, body in theirs:
            try:
                r = receiver.side.call(
                    "group_decrypt", party=receiver.label, sender=sender.address, body=body
                )
            except PeerRefusal as exc:
                raise Divergence(
                    f"{receiver.side.label} refused group message {i} from {sender.side.label}: "
                    f"{exc.kind}: {exc.message}"
                ) from None
            if unb64(r["plaintext"]) != plaintext:
                raise Divergence(
                    f"{receiver.side.label} decrypted group message {i} from "
                    f"{sender.side.label} wrong"
                )
        if theirs:
            sender, _, _, body = theirs[0]
            receiver.side.refusal(
                f"a replayed group message from {sender.side.label}",
                "group_decrypt",
                party=receiver.label,
                sender=sender.address,
                body=body,
            )


def _same_fingerprint(
    x: Side,
    y: Side,
    version: int,
    iterations: int,
    local: tuple[bytes, bytes],
    remote: tuple[bytes, bytes],
) -> None:
    """Both peers compute the same fingerprint; the other party's view (local and remote
    swapped) has the same digits and a different scannable form."""
    request = {
        "version": version,
        "iterations": iterations,
        "local_id": b64(local[0]),
        "local_key": b64(local[1]),
        "remote_id": b64(remote[0]),
        "remote_key": b64(remote[1]),
    }
    swapped = dict(
        request,
        local_id=request["remote_id"],
        local_key=request["remote_key"],
        remote_id=request["local_id"],
        remote_key=request["local_key"],
    )
    what = (
        f"version {version}, {iterations} iterations, "
        f"ids of {len(local[0])} and {len(remote[0])} bytes"
    )
    ours = x.call("fingerprint", **request)
    theirs = y.call("fingerprint", **request)
    if ours["displayable"] != theirs["displayable"]:
        raise Divergence(f"the displayable fingerprints differ ({x.label} vs {y.label}), {what}")
    if ours["scannable"] != theirs["scannable"]:
        raise Divergence(f"the scannable fingerprints differ ({x.label} vs {y.label}), {what}")
    mirrored = y.call("fingerprint", **swapped)
    if mirrored["displayable"] != ours["displayable"]:
        raise Divergence(f"{y.label}'s displayable fingerprint from the other side differs, {what}")
    if mirrored["scannable"] == ours["scannable"]:
        raise Divergence(f"{y.label}'s scannable fingerprint ignores which side is local, {what}")


@_scenario("fingerprint", "both peers compute the same safety numbers", needs=("fingerprint",))
def _fingerprint(ctx: ScenarioContext, x: Side, y: Side) -> None:
    """One pair of parties with 16-byte ids at ``fingerprint_iterations``, versions 1 and 2;
    then ``fingerprint_pairs`` fresh pairs with ids of 1 to 40 bytes, random iteration counts
    (1 to 600, at most ``fingerprint_iterations``) and alternating versions."""
    px = x.new_party()
    py = y.new_party()
    ids = (ctx.rng.randbytes(16), ctx.rng.randbytes(16))
    iterations = ctx.params.fingerprint_iterations
    for version in (1, 2):
        _same_fingerprint(
            x, y, version, iterations, (ids[0], px.identity_key), (ids[1], py.identity_key)
        )
    for i in range(ctx.params.fingerprint_pairs):
        a, b = x.new_party(), y.new_party()
        _same_fingerprint(
            x,
            y,
            1 + i % 2,
            ctx.rng.randint(1, max(1, min(iterations, 600))),
            (ctx.rng.randbytes(ctx.rng.randint(1, 40)), a.identity_key),
            (ctx.rng.randbytes(ctx.rng.randint(1, 40)), b.identity_key),
        )


def run_scenario(
    scenario: Scenario, ctx: ScenarioContext, x: Side, y: Side
) -> tuple[str, str | None]:
    """Run one scenario call: ``("pass" | "fail" | "unsupported", words or None)``."""
    for side in (x, y):
        missing = sorted(scenario.needs - side.peer.capabilities)
        if missing:
            return "unsupported", f"{side.label} lacks {', '.join(missing)}"
    try:
        scenario.run(ctx, x, y)
    except NotSupported as exc:
        return "unsupported", str(exc)
    except Divergence as exc:
        return "fail", str(exc)
    except PeerRefusal as exc:
        return "fail", f"{exc.op} refused unexpectedly: {exc.kind}: {exc.message}"
    except PeerCrashed as exc:
        return "fail", f"peer broke the protocol: {exc}"
    except (KeyError, TypeError, ValueError) as exc:
        return "fail", f"malformed answer: {type(exc).__name__}: {exc}"
    return "pass", None
