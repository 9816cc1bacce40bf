"""Cryptographic primitives. The only package that imports ``cryptography``, ``nacl`` or lattice
code; everything above it sees bytes and the small key types defined here.

Modules: :mod:`.curve25519` (X25519 and XEdDSA keys), :mod:`.kyber1024` and :mod:`.mlkem768`
(the KEMs, with :mod:`._lattice` and :mod:`._gf16_kernel` behind them), :mod:`.primitives`
(AES, HKDF, HMAC, hashes), :mod:`.ecvrf` and :mod:`.kt_primitives` (key transparency),
:mod:`.rng` (randomness) and :mod:`.backend`.

Hazardous material: these are building blocks, not a protocol. Use :mod:`securemsg.cipher`.
Not here: protocol keys with meaning (identity keys, prekeys: :mod:`securemsg.protocol`) and
any byte format (:mod:`securemsg.wire`, :mod:`securemsg.records`).
"""
