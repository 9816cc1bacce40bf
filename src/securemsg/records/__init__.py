"""Storage records: the byte formats a client keeps on its own disk, never sent anywhere.

* :mod:`.session_storage` -- 1:1 session records (``proto/session.proto``);
* :mod:`.spqr_state` -- the SPQR (post-quantum ratchet) state inside a session record
  (``proto/pq_ratchet.proto``);
* :mod:`.sender_key_storage` -- group sender-key records (``proto/sender_key.proto``);
* :mod:`.key_storage` -- identity keys, prekey records and prekey bundles
  (``proto/storage.proto``).

Each codec maps plain ``bytes``/``int`` values to protobuf bytes and back and checks versions and
lengths; building key and state objects is left to :mod:`securemsg.protocol`. Not here: what
travels between clients (:mod:`securemsg.wire`) or between a client and the relay
(:mod:`securemsg.relay_protocol`), and the stores that hold these bytes (:mod:`securemsg.store`).
"""
