"""The client-relay protocol's byte formats (docs/relay-protocol.md).

* :mod:`.frames` -- every request, response and push frame of the relay protocol
  (``proto/relay.proto``) as frozen dataclasses, strictly decoded;
* :mod:`.akd` -- the key-transparency proofs the relay serves (``proto/akd.proto``,
  docs/key-transparency.md).

Only bytes here: the relay's logic is :mod:`securemsg.relay`, the client's is
:mod:`securemsg.client`, and the messages clients exchange end to end (which the relay carries
but cannot read) are :mod:`securemsg.wire`.
"""
