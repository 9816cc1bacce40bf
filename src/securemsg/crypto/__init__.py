"""Cryptographic primitives. The only package that imports ``cryptography``, ``nacl`` or lattice
code; everything above it sees bytes and the small key types defined here.

Hazardous material: these are building blocks, not a protocol. Use :mod:`securemsg.cipher`.
"""
