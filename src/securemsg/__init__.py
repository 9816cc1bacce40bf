"""securemsg: end-to-end encrypted messaging, byte-compatible with libsignal 0.103.0."""

__version__ = "0.1.0"
