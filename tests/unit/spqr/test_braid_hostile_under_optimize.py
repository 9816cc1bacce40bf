"""Under ``python -O`` (asserts stripped) a hostile braid message still gets a typed error.

A child interpreter started with ``-O`` walks two braids through every state of a few epochs
and, in each state, feeds it bounded hostile messages: every payload type with the chunk
missing, chunks of the wrong length, indexes out of range, epochs around the current one, and
random ``pq_ratchet`` bytes through ``spqr_recv``. Anything but a :class:`PeerError` (or a
normal return) fails the child, and with it this test.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import random
    import sys

    assert False, "asserts must be stripped (-O)"  # never runs under -O

    from securemsg.crypto.rng import DeterministicRng
    from securemsg.errors import PeerError
    from securemsg.protocol.spqr import SpqrDirection, spqr_initial_state, spqr_recv, spqr_send
    from securemsg.protocol.spqr.message import MessageType, SpqrMessage

    rng = DeterministicRng(b"braid under -O")
    pick = random.Random(7)
    a = spqr_initial_state(b"\\x11" * 32, SpqrDirection.A2B)
    b = spqr_initial_state(b"\\x11" * 32, SpqrDirection.B2A)
    seen = set()
    fed = 0

    def hostile(braid):
        e = braid.epoch
        for epoch in (e - 1, e, e + 1):
            if epoch < 1:
                continue
            for t in MessageType:
                for ci, chunk in ((None, None), (0, None), (None, bytes(32)), (0, b"x"),
                                  (0xFFFF, bytes(32)), (1, pick.randbytes(32))):
                    yield SpqrMessage(epoch, 0, t, ci, chunk)

    def probe(state):
        global fed
        seen.add(state.braid.NAME)
        for msg in hostile(state.braid):
            fed += 1
            try:
                state.braid.recv(msg)
            except PeerError:
                pass
        for _ in range(20):
            fed += 1
            try:
                spqr_recv(state, pick.randbytes(pick.randrange(0, 48)))
            except PeerError:
                pass

    probed = set()
    for i in range(2000):  # a conversation with runs of either side: every braid state
        a_sends = pick.random() < (0.5 if i < 600 else 0.9 if (i // 150) % 2 else 0.1)
        sender, receiver = (a, b) if a_sends else (b, a)
        for st in (sender, receiver):
            key = (st.braid.NAME, st.epoch)
            if key not in probed:  # each state of each epoch once
                probed.add(key)
                probe(st)
        sender, blob, _ = spqr_send(sender, rng)
        receiver, _ = spqr_recv(receiver, blob)
        a, b = (sender, receiver) if a_sends else (receiver, sender)
        if len(seen) == 11 and a.epoch > 3:
            break
    print(len(seen), fed, a.epoch, sorted(seen), file=sys.stderr)
    print(len(seen), fed, a.epoch)
    sys.exit(0 if len(seen) == 11 else 3)
    """
)


def test_hostile_braid_messages_get_typed_errors_under_python_O() -> None:
    proc = subprocess.run(
        [sys.executable, "-O", "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-500:]
    states, fed, epoch = (int(x) for x in proc.stdout.split())
    assert states == 11 and fed > 1000 and epoch > 3
