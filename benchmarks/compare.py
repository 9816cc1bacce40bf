"""Side-by-side comparison: securemsg vs the floor vs libsignal (Node) vs python-doubleratchet.

Run: ``python -m benchmarks.compare [--quick] [--json PATH] [--chart PATH]``.

Theory of operation
-------------------
Absolute times drift on a shared machine; only ratios measured in the same run mean anything.
So every scenario is measured for every implementation in
*interleaved blocks*: block 1 of securemsg, of the floor, of libsignal, of python-doubleratchet,
then block 2 of each, and so on; the samples of all blocks are pooled. Load that comes and goes
then hits every implementation alike, and the ratios of the medians stay stable.

Every sample is ONE iteration timed on its own (``time.perf_counter_ns`` in Python,
``process.hrtime.bigint()`` inside Node, around the scenario's calls only), so we can report
medians and interquartile ranges (IQR = q3 - q1) rather than means. libsignal runs inside the
Node interop peer (tests/interop/peer, ops ``bench_*`` of ``ops_bench.mjs``): the scenario loop
runs in Node and only the timings cross the JSON pipe, with libsignal's in-memory stores holding
serialized records, as its own tests do.

Scenarios (RT = encrypt + serialize + parse + decrypt of one message in one process):

* ``rt_100b`` / ``rt_64kib`` / ``rt_1mib``: RT on an established 1:1 session (steady state with
  SPQR for securemsg and libsignal);
* ``ping_pong``: RT alternating direction, so every message has a DH ratchet step;
* ``session_setup``: process_prekey_bundle + first encrypt + first (PreKey) decrypt, PQXDH with
  Kyber1024; making the bundle's keys is not timed;
* ``encrypt_chain``: encrypt + serialize on an established sending chain;
* ``decrypt_first_on_chain``: parse + decrypt of the first message on a new chain (DH step;
  the reply that makes the sender turn its ratchet is untimed);
* ``ratchet_forward_100`` / ``_1000``: decrypt a message N ahead on the chain (N skipped keys
  derived and kept; the N undelivered encryptions are untimed);
* ``sealed_v1_rt``: sealed sender v1 encrypt + decrypt on an established session;
* ``group_rt_100b``: sender-key group_encrypt + group_decrypt;
* ``sealed_v2_<R>[x<D>]``: sealed sender v2 encrypt of a sender-key message to R recipients
  (2, 5, 10, 100, 1000) with 1 device each, and to 10 recipients with D = 2, 5, 10 devices;
* ``safety_number``: 60-digit safety number (5200 iterations);
* ``kem_keygen`` / ``kem_encaps`` / ``kem_decaps``: Kyber1024 (libsignal's Node API exposes
  only key generation, so encaps/decaps have no libsignal column).

The speed targets (docs/benchmarks.md) are checked at the end; the JSON has every sample
statistic and ratio.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import functools
import gc
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_peers import PT_1M, PT_64K, PT_100, PyDoubleRatchetPair
from benchmarks.floor import FloorPair
from securemsg import cipher
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "interop"))

IMPLS = ("securemsg", "floor", "libsignal", "python-doubleratchet")
_PREKEY, _WHISPER = CiphertextMessageType.PREKEY, CiphertextMessageType.WHISPER
NOW_MS = 1_760_000_000_000


# -- statistics --------------------------------------------------------------------------------


def _quantile(sorted_samples: list[float], p: float) -> float:
    pos = (len(sorted_samples) - 1) * p
    lo, hi = int(pos), min(int(pos) + 1, len(sorted_samples) - 1)
    return sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * (pos - lo)


@dataclass
class Result:
    """Pooled samples of one implementation on one scenario (microseconds per iteration)."""

    samples: list[float] = field(default_factory=list)
    # Node reports statistics per block, not samples: (median, q1, q3, n) per block.
    blocks: list[tuple[float, float, float, int]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def stats(self) -> dict[str, float]:
        if self.samples:
            s = sorted(self.samples)
            med, q1, q3, n = _quantile(s, 0.5), _quantile(s, 0.25), _quantile(s, 0.75), len(s)
        else:  # weighted pooling of per-block quantiles (blocks are equal-sized)
            med = statistics.median(b[0] for b in self.blocks)
            q1 = statistics.median(b[1] for b in self.blocks)
            q3 = statistics.median(b[2] for b in self.blocks)
            n = sum(b[3] for b in self.blocks)
        return {"median_us": med, "q1_us": q1, "q3_us": q3, "iqr_us": q3 - q1, "n": n}


def time_loop(
    step: Callable[[Any], object],
    iterations: int,
    *,
    prepare: Callable[[], Any] | None = None,
    state: Any = None,
    warmup: int = 20,
) -> list[float]:
    """Runs ``step`` warmup + iterations times, timing each iteration alone (µs)."""
    out: list[float] = []
    clock = time.perf_counter_ns
    for i in range(warmup + iterations):
        ctx = prepare() if prepare is not None else state
        t0 = clock()
        step(ctx)
        t1 = clock()
        if i >= warmup:
            out.append((t1 - t0) / 1000)
    return out


# -- securemsg fixtures ------------------------------------------------------------------------


class SecuremsgParty:
    """A securemsg client with an in-memory store (the recipes of cipher.py / groups.py)."""

    _ids = iter(range(1, 1 << 30))

    def __init__(self, rng: Any) -> None:
        from securemsg.protocol.address import ProtocolAddress
        from securemsg.protocol.identity_and_prekeys import (
            IdentityKeyPair,
            generate_registration_id,
        )
        from securemsg.store.memory import InMemoryProtocolStore

        self.rng = rng
        self.address = ProtocolAddress(str(uuid.uuid4()), 1)
        self.identity = IdentityKeyPair.generate(rng)
        self.store = InMemoryProtocolStore(self.identity, generate_registration_id(rng))

    def bundle(self) -> Any:
        from securemsg.protocol.identity_and_prekeys import (
            KyberPreKeyRecord,
            PreKeyBundle,
            PreKeyRecord,
            SignedPreKeyRecord,
        )

        i = next(self._ids)
        spk = SignedPreKeyRecord.generate(i, self.identity, NOW_MS, self.rng)
        kpk = KyberPreKeyRecord.generate(i, self.identity, NOW_MS, self.rng)
        opk = PreKeyRecord.generate(i, self.rng)
        self.store.save_signed_pre_key(i, spk)
        self.store.save_kyber_pre_key(i, kpk)
        self.store.save_pre_key(i, opk)
        return PreKeyBundle(
            registration_id=self.store.get_local_registration_id(),
            device_id=self.address.device_id,
            pre_key_id=i,
            pre_key_public=opk.public_key,
            signed_pre_key_id=i,
            signed_pre_key_public=spk.public_key,
            signed_pre_key_signature=spk.signature,
            identity_key=self.identity.identity_key,
            kyber_pre_key_id=i,
            kyber_pre_key_public=kpk.public_key,
            kyber_pre_key_signature=kpk.signature,
        )

    def start_session(self, other: SecuremsgParty) -> None:
        from securemsg import cipher

        cipher.process_prekey_bundle(
            other.bundle(),
            other.address,
            self.store,
            now=NOW_MS,
            rng=self.rng,
            local_address=self.address,
        )

    def send(self, other: SecuremsgParty, plaintext: bytes) -> bytes:
        """One RT: we encrypt, serialize; ``other`` parses and decrypts."""
        msg = cipher.message_encrypt(
            plaintext,
            other.address,
            self.store,
            now=NOW_MS,
            rng=self.rng,
            local_address=self.address,
        )
        mtype = (
            CiphertextMessageType.PREKEY
            if type(msg) is PreKeySignalMessage
            else CiphertextMessageType.WHISPER
        )
        return cipher.message_decrypt(
            msg.to_bytes(),
            mtype,
            self.address,
            other.store,
            now=NOW_MS,
            rng=other.rng,
            local_address=other.address,
        )


def _rng() -> Any:
    from securemsg.crypto.rng import SystemRng

    return SystemRng()


def securemsg_pair() -> tuple[SecuremsgParty, SecuremsgParty]:
    """Alice and Bob after PQXDH and one message each way (both send Whisper messages)."""
    alice, bob = SecuremsgParty(_rng()), SecuremsgParty(_rng())
    alice.start_session(bob)
    assert alice.send(bob, b"hi bob") == b"hi bob"
    assert bob.send(alice, b"hi alice") == b"hi alice"
    return alice, bob


class _Alternate:
    def __init__(self, pair: tuple[SecuremsgParty, SecuremsgParty]) -> None:
        self.a, self.b = pair
        self.turn = False

    def __call__(self, _ctx: object) -> None:
        self.turn = not self.turn
        if self.turn:
            self.a.send(self.b, PT_100)
        else:
            self.b.send(self.a, PT_100)


def _securemsg_setup_prepare() -> tuple[SecuremsgParty, SecuremsgParty, Any]:
    alice, bob = SecuremsgParty(_rng()), SecuremsgParty(_rng())
    return alice, bob, bob.bundle()


def _securemsg_setup_step(ctx: tuple[SecuremsgParty, SecuremsgParty, Any]) -> None:
    from securemsg import cipher

    alice, bob, bundle = ctx
    cipher.process_prekey_bundle(
        bundle, bob.address, alice.store, now=NOW_MS, rng=alice.rng, local_address=alice.address
    )
    alice.send(bob, PT_100)


class _SecuremsgGroup:
    def __init__(self) -> None:
        from securemsg import groups

        self.g = groups
        self.alice, self.bob = SecuremsgParty(_rng()), SecuremsgParty(_rng())
        self.dist = uuid.uuid4()
        skdm = groups.create_sender_key_distribution_message(
            self.alice.address, self.dist, self.alice.store, rng=self.alice.rng
        )
        groups.process_sender_key_distribution_message(
            self.alice.address, skdm.to_bytes(), self.bob.store
        )

    def __call__(self, _ctx: object) -> None:
        m = self.g.group_encrypt(
            self.alice.address, self.dist, PT_100, self.alice.store, rng=self.alice.rng
        )
        self.g.group_decrypt(m.to_bytes(), self.alice.address, self.bob.store)


class _SecuremsgChain:
    """1:1 fixtures on one established pair: encrypt only, first-on-chain, ratchet forward N."""

    def __init__(self) -> None:
        from securemsg import cipher
        from securemsg.wire.messages import CiphertextMessageType

        self.cipher = cipher
        self.whisper = CiphertextMessageType.WHISPER
        self.a, self.b = securemsg_pair()

    def encrypt(self, _ctx: object) -> None:
        a, b = self.a, self.b
        self.cipher.message_encrypt(
            PT_100, b.address, a.store, now=NOW_MS, rng=a.rng, local_address=a.address
        ).to_bytes()

    def _encrypt_a2b(self) -> bytes:
        a, b = self.a, self.b
        return self.cipher.message_encrypt(
            PT_100, b.address, a.store, now=NOW_MS, rng=a.rng, local_address=a.address
        ).to_bytes()

    def decrypt(self, body: bytes) -> None:
        a, b = self.a, self.b
        self.cipher.message_decrypt(
            body, self.whisper, a.address, b.store, now=NOW_MS, rng=b.rng, local_address=b.address
        )

    def prepare_first_on_chain(self) -> bytes:
        self.b.send(self.a, b"turn")  # Alice turns her ratchet on Bob's new key
        return self._encrypt_a2b()

    def prepare_forward(self, n: int) -> Callable[[], bytes]:
        def prepare() -> bytes:
            for _ in range(n):
                self._encrypt_a2b()
            return self._encrypt_a2b()

        return prepare


class _FloorChain:
    def __init__(self) -> None:
        self.pair = FloorPair()

    def encrypt(self, _ctx: object) -> None:
        self.pair.alice.encrypt(PT_100)

    def decrypt(self, body: bytes) -> None:
        self.pair.bob.decrypt(body)

    def prepare_first_on_chain(self) -> bytes:
        self.pair.alice.decrypt(self.pair.bob.encrypt(b"turn"))
        return self.pair.alice.encrypt(PT_100)


def _securemsg_sealed_v1() -> Callable[[object], object]:
    """sealed sender v1 RT (1:1 encrypt + seal; unseal + validate + 1:1 decrypt)."""
    from securemsg import sealed_sender
    from securemsg.crypto.curve25519 import KeyPair
    from securemsg.protocol.sealed_sender import SenderCertificate, ServerCertificate

    alice, bob = securemsg_pair()
    rng = alice.rng
    trust_root, server = KeyPair.generate(rng), KeyPair.generate(rng)
    server_cert = ServerCertificate.new(1, server.public_key, trust_root.private_key, rng)
    cert = SenderCertificate.new(
        sender_uuid=alice.address.name,
        sender_e164=None,
        sender_device_id=1,
        key=alice.identity.identity_key.public_key,
        expiration=NOW_MS + 86_400_000,
        signer=server_cert,
        signer_key=server.private_key,
        rng=rng,
    )
    root_public = trust_root.public_key

    def step(_ctx: object) -> object:
        env = sealed_sender.sealed_sender_encrypt(
            bob.address, cert, PT_100, alice.store, now=NOW_MS, rng=rng
        )
        return sealed_sender.sealed_sender_decrypt(
            env,
            root_public,
            bob.store,
            now=NOW_MS,
            local_uuid=bob.address.name,
            local_device_id=bob.address.device_id,
            rng=bob.rng,
        )

    return step


def _securemsg_kem(op: str) -> Callable[[object], object]:
    """Kyber1024 (round 3, as in PQXDH) keygen, encaps or decaps."""
    from securemsg.crypto.kyber1024 import KyberKeyPair

    rng = _rng()
    pair = KyberKeyPair.generate(rng)
    ct = pair.public_key.encapsulate(rng)[1]
    if op == "keygen":
        return lambda _ctx: KyberKeyPair.generate(rng)
    if op == "encaps":
        return lambda _ctx: pair.public_key.encapsulate(rng)
    return lambda _ctx: pair.decapsulate(ct)


def _securemsg_safety_number() -> Callable[[object], object]:
    from securemsg.protocol.fingerprint import Fingerprint
    from securemsg.protocol.identity_and_prekeys import IdentityKeyPair

    rng = _rng()
    local = IdentityKeyPair.generate(rng).identity_key
    remote = IdentityKeyPair.generate(rng).identity_key

    def step(_ctx: object) -> object:
        return Fingerprint.create(
            version=2,
            iterations=5200,
            local_id=b"+14152222222",
            local_key=local,
            remote_id=b"+14153333333",
            remote_key=remote,
        ).display_string()

    return step


def _securemsg_sealed_v2(recipients: int, devices: int = 1) -> Callable[[object], object]:
    """sealed sender v2 encrypt of a sender-key message to ``recipients`` x ``devices``."""
    from securemsg import groups, sealed_sender
    from securemsg.crypto.curve25519 import KeyPair
    from securemsg.protocol.sealed_sender import (
        SenderCertificate,
        ServerCertificate,
        UnidentifiedSenderMessageContent,
    )
    from securemsg.wire.messages import CiphertextMessageType

    rng = _rng()
    alice = SecuremsgParty(rng)
    destinations = []
    for _ in range(recipients):
        name = str(uuid.uuid4())
        for device in range(1, devices + 1):
            other = SecuremsgParty(rng)
            other.address = type(other.address)(name, device)
            alice.start_session(other)
            destinations.append(other.address)
    dist = uuid.uuid4()
    groups.create_sender_key_distribution_message(alice.address, dist, alice.store, rng=rng)
    inner = groups.group_encrypt(alice.address, dist, PT_100, alice.store, rng=rng)
    trust_root, server = KeyPair.generate(rng), KeyPair.generate(rng)
    server_cert = ServerCertificate.new(1, server.public_key, trust_root.private_key, rng)
    cert = SenderCertificate.new(
        sender_uuid=alice.address.name,
        sender_e164=None,
        sender_device_id=1,
        key=alice.identity.identity_key.public_key,
        expiration=NOW_MS + 86_400_000,
        signer=server_cert,
        signer_key=server.private_key,
        rng=rng,
    )
    usmc = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDERKEY, cert, inner.to_bytes(), 0, bytes(16)
    )

    def step(_ctx: object) -> object:
        return sealed_sender.sealed_sender_multi_recipient_encrypt(
            destinations, usmc, alice.store, rng=rng
        )

    return step


# -- scenarios ---------------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    label: str
    iterations: int  # per block, Python side
    node_op: str | None
    node_args: dict[str, Any]
    python: dict[str, Callable[[], tuple[Callable[[Any], object], dict[str, Any]]]]
    blocks: int = 5
    bytes_per_iter: int = 0


def _call(fn: Callable[[bytes], object], arg: bytes) -> Callable[[object], object]:
    return lambda _ctx: fn(arg)


class _SecuremsgRoundTrip:
    """One RT per call, as an application makes it: message_encrypt, to_bytes, message_decrypt
    (the same calls as :meth:`SecuremsgParty.send`, without its extra frame)."""

    def __init__(self, plaintext: bytes) -> None:
        self.a, self.b = securemsg_pair()
        self.plaintext = plaintext

    def __call__(self, _ctx: object) -> None:
        a, b = self.a, self.b
        msg = cipher.message_encrypt(
            self.plaintext, b.address, a.store, now=NOW_MS, rng=a.rng, local_address=a.address
        )
        cipher.message_decrypt(
            msg.to_bytes(),
            _PREKEY if type(msg) is PreKeySignalMessage else _WHISPER,
            a.address,
            b.store,
            now=NOW_MS,
            rng=b.rng,
            local_address=b.address,
        )


def _state(
    step: Callable[[Any], object], **kw: Any
) -> tuple[Callable[[Any], object], dict[str, Any]]:
    return step, kw


def _chain_state(step: str, prepare: str) -> tuple[Callable[[Any], object], dict[str, Any]]:
    c = _SecuremsgChain()
    return _state(getattr(c, step), prepare=getattr(c, prepare))


def _floor_first_on_chain() -> tuple[Callable[[Any], object], dict[str, Any]]:
    c = _FloorChain()
    return _state(c.decrypt, prepare=c.prepare_first_on_chain)


def _forward_state(n: int) -> tuple[Callable[[Any], object], dict[str, Any]]:
    c = _SecuremsgChain()
    return _state(c.decrypt, prepare=c.prepare_forward(n))


def _ssv2_state(r: int, d: int) -> tuple[Callable[[Any], object], dict[str, Any]]:
    return _state(_securemsg_sealed_v2(r, d))


def _kem_state(op: str) -> tuple[Callable[[Any], object], dict[str, Any]]:
    return _state(_securemsg_kem(op))


def scenarios(quick: bool) -> list[Scenario]:
    k = 0.5 if quick else 2.5

    def n(x: int) -> int:
        return max(3, int(x * k))

    def rt(size_pt: bytes) -> dict[str, Callable[[], Any]]:
        return {
            "securemsg": lambda: _state(_SecuremsgRoundTrip(size_pt)),
            "floor": lambda: _state(_call(FloorPair().round_trip, size_pt)),
            "python-doubleratchet": lambda: _state(
                _call(PyDoubleRatchetPair().round_trip, size_pt)
            ),
        }

    ssv2_n = 100 if quick else 1000
    ssv2_cases = [(2, 1), (5, 1), (10, 1), (100, 1), (ssv2_n, 1), (10, 2), (10, 5), (10, 10)]
    return [
        Scenario(
            "rt_100b",
            "1:1 RT 100 B",
            n(1000),
            "bench_session_round_trip",
            {"size": 100},
            rt(PT_100),
            bytes_per_iter=100,
        ),
        Scenario(
            "rt_64kib",
            "1:1 RT 64 KiB",
            n(150),
            "bench_session_round_trip",
            {"size": 65536},
            rt(PT_64K),
            bytes_per_iter=65536,
        ),
        Scenario(
            "rt_1mib",
            "1:1 RT 1 MiB",
            n(16),
            "bench_session_round_trip",
            {"size": 1 << 20},
            rt(PT_1M),
            bytes_per_iter=1 << 20,
        ),
        Scenario(
            "ping_pong",
            "ping-pong (DH step/msg)",
            n(400),
            "bench_ping_pong",
            {},
            {
                "securemsg": lambda: _state(_Alternate(securemsg_pair())),
                "floor": lambda: _state(_call(FloorPair().ping_pong, PT_100)),
                "python-doubleratchet": lambda: _state(
                    _call(PyDoubleRatchetPair().ping_pong, PT_100)
                ),
            },
        ),
        Scenario(
            "session_setup",
            "session setup (PQXDH)",
            n(40),
            "bench_session_setup",
            {},
            {
                "securemsg": lambda: _state(
                    _securemsg_setup_step, prepare=_securemsg_setup_prepare
                ),
            },
        ),
        Scenario(
            "encrypt_chain",
            "encrypt on existing chain",
            n(1000),
            "bench_session_encrypt",
            {"size": 100},
            {
                "securemsg": lambda: _state(_SecuremsgChain().encrypt),
                "floor": lambda: _state(_FloorChain().encrypt),
            },
        ),
        Scenario(
            "decrypt_first_on_chain",
            "decrypt first on chain (DH step)",
            n(200),
            "bench_decrypt_first_on_chain",
            {"size": 100},
            {
                "securemsg": lambda: _chain_state("decrypt", "prepare_first_on_chain"),
                "floor": lambda: _floor_first_on_chain(),
            },
        ),
        *[
            Scenario(
                f"ratchet_forward_{fwd}",
                f"ratchet forward {fwd}",
                max(3, int((40 if fwd == 100 else 8) * k)),
                "bench_ratchet_forward",
                {"n": fwd},
                {"securemsg": functools.partial(_forward_state, fwd)},
                blocks=3,
            )
            for fwd in (100, 1000)
        ],
        Scenario(
            "sealed_v1_rt",
            "sealed sender v1 RT",
            n(300),
            "bench_sealed_sender_v1",
            {"size": 100},
            {"securemsg": lambda: _state(_securemsg_sealed_v1())},
        ),
        Scenario(
            "group_rt_100b",
            "group RT 100 B",
            n(600),
            "bench_group_round_trip",
            {"size": 100},
            {"securemsg": lambda: _state(_SecuremsgGroup())},
        ),
        *[
            Scenario(
                f"sealed_v2_{r}" + (f"x{d}" if d > 1 else ""),
                f"sealed sender v2, {r} recipients" + (f" x {d} devices" if d > 1 else ""),
                max(3, int(k * max(4, 4000 // (r * d)))),
                "bench_sealed_sender_v2",
                {"recipients": r, "devices": d},
                {"securemsg": functools.partial(_ssv2_state, r, d)},
                blocks=2 if r * d >= 100 else 3,
            )
            for r, d in ssv2_cases
        ],
        Scenario(
            "safety_number",
            "safety number",
            n(30),
            "bench_safety_number",
            {},
            {"securemsg": lambda: _state(_securemsg_safety_number())},
            blocks=3,
        ),
        *[
            Scenario(
                f"kem_{op}",
                f"Kyber1024 {op}",
                n(200),
                "bench_kem_keygen" if op == "keygen" else None,
                {},
                {"securemsg": functools.partial(_kem_state, op)},
                blocks=3,
            )
            for op in ("keygen", "encaps", "decaps")
        ],
    ]


# -- running -----------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
    }


def run(quick: bool, progress_out: Any, only: list[str] | None = None) -> dict[str, Any]:
    from peer_client import LibsignalPeer
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    peer = LibsignalPeer().start()
    node_version = peer.call("ping").get("libsignal_version")
    results: dict[str, dict[str, Result]] = {}
    scens = [s for s in scenarios(quick) if not only or s.name in only]
    t_start = time.time()
    try:
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[now]}"),
            TimeElapsedColumn(),
            console=progress_out,
            transient=False,
        ) as progress:
            total = sum(s.blocks * (len(s.python) + (s.node_op is not None)) for s in scens)
            task = progress.add_task("benchmarks", total=total, now="")
            for s in scens:
                res = results.setdefault(s.name, {})
                steps = {}
                for impl, make in s.python.items():
                    progress.update(task, now=f"{s.label}: setting up {impl}")
                    step, kw = make()
                    steps[impl] = (step, kw)
                for b in range(s.blocks):
                    for impl in IMPLS:
                        if impl == "libsignal" and s.node_op is not None:
                            progress.update(task, now=f"{s.label}: libsignal block {b + 1}")
                            r = peer.call(
                                s.node_op,
                                iterations=s.iterations,
                                warmup=min(20, s.iterations),
                                **s.node_args,
                            )
                            res.setdefault(impl, Result()).blocks.append(
                                (r["median_us"], r["q1_us"], r["q3_us"], r["iterations"])
                            )
                            progress.advance(task)
                        elif impl in steps:
                            progress.update(task, now=f"{s.label}: {impl} block {b + 1}")
                            step, kw = steps[impl]
                            gc.collect()
                            res.setdefault(impl, Result()).samples.extend(
                                time_loop(step, s.iterations, warmup=min(20, s.iterations), **kw)
                            )
                            progress.advance(task)
    finally:
        peer.stop()
    meta = _machine()
    meta.update(
        date=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        libsignal=node_version,
        quick=quick,
        seconds=round(time.time() - t_start, 1),
        load_average_end=os.getloadavg(),
    )
    return {"meta": meta, "scenarios": _summarise(scens, results)}


def _summarise(scens: list[Scenario], results: dict[str, dict[str, Result]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for s in scens:
        row: dict[str, Any] = {"label": s.label, "bytes": s.bytes_per_iter, "impls": {}}
        for impl, r in results.get(s.name, {}).items():
            st = r.stats()
            st["per_s"] = 1e6 / st["median_us"]
            if s.bytes_per_iter:
                st["mb_per_s"] = s.bytes_per_iter / st["median_us"]  # bytes/µs == MB/s
            row["impls"][impl] = st
        base = row["impls"].get("securemsg")
        if base:
            row["securemsg_speedup_vs"] = {
                impl: st["median_us"] / base["median_us"]
                for impl, st in row["impls"].items()
                if impl != "securemsg"
            }
        out[s.name] = row
    return out


def check_targets(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The speed targets (docs/benchmarks.md) as same-run ratios of medians."""
    sc = data["scenarios"]

    def med(s: str, impl: str) -> float | None:
        st = sc.get(s, {}).get("impls", {}).get(impl)
        return None if st is None else float(st["median_us"])

    def ratio(s: str, num: str, den: str) -> float | None:
        a, b = med(s, num), med(s, den)
        return None if a is None or b is None else a / b

    ssv2 = "sealed_v2_1000" if "sealed_v2_1000" in sc else "sealed_v2_100"
    rows = [
        ("1:1 RT 100 B: securemsg / floor", ratio("rt_100b", "securemsg", "floor"), "<=", 1.3),
        ("1:1 RT 100 B: msg/s vs libsignal", ratio("rt_100b", "libsignal", "securemsg"), ">=", 4.0),
        (
            "1:1 RT 100 B: msg/s vs python-doubleratchet",
            ratio("rt_100b", "python-doubleratchet", "securemsg"),
            ">=",
            3.0,
        ),
        ("RT 64 KiB: securemsg / floor", ratio("rt_64kib", "securemsg", "floor"), "<=", 1.2),
        ("RT 1 MiB: MB/s vs floor", ratio("rt_1mib", "floor", "securemsg"), ">=", 0.9),
        (
            "ping-pong: securemsg / (floor + DH step)",
            ratio("ping_pong", "securemsg", "floor"),
            "<=",
            1.3,
        ),
        (
            "session setup: libsignal time / securemsg time",
            ratio("session_setup", "libsignal", "securemsg"),
            ">=",
            1.0,
        ),
        (
            "group RT: msg/s vs libsignal",
            ratio("group_rt_100b", "libsignal", "securemsg"),
            ">=",
            1.3,
        ),
        (
            f"{ssv2}: libsignal time / securemsg time",
            ratio(ssv2, "libsignal", "securemsg"),
            ">=",
            1.0,
        ),
    ]
    out = []
    for name, value, op, limit in rows:
        ok = None if value is None else (value <= limit if op == "<=" else value >= limit)
        out.append({"target": name, "value": value, "op": op, "limit": limit, "met": ok})
    return out


# -- output ------------------------------------------------------------------------------------


def print_report(data: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    m = data["meta"]
    console.print(
        f"[bold]securemsg comparison[/] {m['date']}  {m['cpu']} ({m['cores']} cores), "
        f"Python {m['python']}, libsignal {m['libsignal']} via Node; load avg "
        f"{m['load_average_start'][0]:.2f} -> {m['load_average_end'][0]:.2f}; {m['seconds']} s"
    )
    t = Table(title="median µs per iteration [IQR]; ratio = that impl's median / securemsg's")
    t.add_column("scenario")
    for impl in IMPLS:
        t.add_column(impl, justify="right")
    for row in data["scenarios"].values():
        cells = []
        for impl in IMPLS:
            st = row["impls"].get(impl)
            if st is None:
                cells.append("-")
                continue
            cell = f"{st['median_us']:,.1f} [{st['iqr_us']:,.1f}]"
            if impl != "securemsg" and "securemsg" in row["impls"]:
                cell += f"\n{row['securemsg_speedup_vs'][impl]:.2f}x"
            if "mb_per_s" in st and row["bytes"] >= 65536:
                cell += f"\n{st['mb_per_s']:.0f} MB/s"
            cells.append(cell)
        t.add_row(row["label"], *cells)
    console.print(t)
    tt = Table(title="speed targets, same-run ratios of medians")
    for col in ("target", "value", "need", "met"):
        tt.add_column(col)
    for r in data["targets"]:
        v = "n/a" if r["value"] is None else f"{r['value']:.2f}x"
        met = {True: "[green]yes[/]", False: "[red]NO[/]", None: "[yellow]not measured[/]"}[
            r["met"]
        ]
        tt.add_row(r["target"], v, f"{r['op']} {r['limit']}x", met)
    console.print(tt)


def draw_chart(data: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(data["scenarios"].values())
    colors = {
        "securemsg": "#2a6fdb",
        "floor": "#9e9e9e",
        "libsignal": "#e07b39",
        "python-doubleratchet": "#6aa84f",
    }
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.2 + 1.05 * len(rows)))
    for ax, row in zip(axes, rows, strict=True):
        impls = [i for i in IMPLS if i in row["impls"]]
        meds = [row["impls"][i]["median_us"] for i in impls]
        errs = [
            [row["impls"][i]["median_us"] - row["impls"][i]["q1_us"] for i in impls],
            [row["impls"][i]["q3_us"] - row["impls"][i]["median_us"] for i in impls],
        ]
        ax.barh(impls, meds, xerr=errs, color=[colors[i] for i in impls], capsize=2)
        ax.invert_yaxis()
        ax.set_title(row["label"], fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        for y, v in enumerate(meds):
            ax.text(v, y, f" {v:,.0f} µs" if v >= 100 else f" {v:.1f} µs", va="center", fontsize=7)
        ax.set_xlim(0, max(meds) * 1.35)
    m = data["meta"]
    fig.suptitle(
        f"median time per iteration (lower is better), IQR whiskers\n{m['date'][:10]}, "
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_report(data: dict[str, Any]) -> str:
    """The results and targets as Markdown tables (what docs/benchmarks.md shows)."""
    lines = [
        "| scenario | " + " | ".join(IMPLS) + " |",
        "|---|" + "---:|" * len(IMPLS),
    ]
    for sc in data["scenarios"].values():
        cells = [sc["label"]]
        for impl in IMPLS:
            r = sc["impls"].get(impl)
            if r is None:
                cells.append("-")
                continue
            cell = f"{r['median_us']:,.1f} [{r['iqr_us']:,.1f}]"
            if sc["bytes"] >= 1024:
                cell += f" ({r['mb_per_s']:,.0f} MB/s)"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| target | value | need | met |", "|---|---:|---:|---|"]
    for t in data.get("targets", []):
        value = "n/a" if t["value"] is None else f"{t['value']:.2f}x"
        met = "yes" if t["met"] else "**no**"
        lines.append(f"| {t['target']} | {value} | {t['op']} {t['limit']}x | {met} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.compare", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--quick", action="store_true", help="~1 minute smoke run (fewer iterations)")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    ap.add_argument("--chart", metavar="PATH", help="draw a PNG chart (matplotlib, Agg)")
    ap.add_argument("--markdown", metavar="PATH", help="write the tables as Markdown")
    ap.add_argument(
        "--only",
        metavar="NAMES",
        help="comma-separated scenario names to run (e.g. rt_100b,group_rt_100b); default all",
    )
    args = ap.parse_args(argv)
    console = Console(stderr=True)
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    data = run(args.quick, console, only)
    data["targets"] = check_targets(data)
    print_report(data, Console(width=150))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    if args.chart:
        draw_chart(data, args.chart)
    if args.markdown:
        Path(args.markdown).write_text(markdown_report(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
