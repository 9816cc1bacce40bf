"""The Signal protocol's pure core: keys, key agreement, ratchets, sessions, sender keys.

* :mod:`.address` -- service ids and (name, device) addresses;
* :mod:`.identity_and_prekeys` -- identity keys, prekey records and prekey bundles;
* :mod:`.pqxdh` -- PQXDH key agreement (X25519 + Kyber1024);
* :mod:`.double_ratchet` -- the Double Ratchet's key schedule and chains;
* :mod:`.spqr` -- SPQR, the sparse post-quantum ratchet;
* :mod:`.session_state` -- one session and the triple ratchet over it;
* :mod:`.session_record` -- a remote's current and archived sessions;
* :mod:`.sender_keys` -- group sender-key chains;
* :mod:`.sealed_sender` -- the sealed-sender cryptography (certificates, v1/v2 sealing);
* :mod:`.fingerprint` -- safety numbers.

Everything here is sans-IO and takes the time and randomness as arguments. Not here: bytes
(:mod:`securemsg.wire`, :mod:`securemsg.records`), stores (:mod:`securemsg.store`) and the
recipes that load, compute and save in one transaction (:mod:`securemsg.cipher`,
:mod:`securemsg.sealed_sender`, :mod:`securemsg.groups`).
"""
