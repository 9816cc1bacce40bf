"""What the relay holds about one account, as a legal-demand answer would have to state it.

Theory of operation
-------------------
:func:`disclose` reads everything the :class:`~securemsg.relay.store.RelayStore` holds that
is linked to one ACI (its account row, its devices (linked devices included), their public
keys, an open linking code's expiry, envelopes queued for
it, identified envelopes it sent that are still queued, and its key-transparency entries:
each published version of its identity key with its epoch and commitment, and a key queued
for the next epoch) and returns a
:class:`DisclosureReport`, rendered by :meth:`DisclosureReport.to_text` and
:meth:`DisclosureReport.to_json`. The report holds no clock reading and sorts everything,
so the same database always gives the same bytes. Sealed envelopes say "sender not known to
the relay" because the relay never stored one.

The report also says what is recoverable from the relay's files beyond those rows: by
design nothing (acknowledged and expired envelopes are overwritten and the WAL truncated, see
:class:`~securemsg.relay.store.SqliteRelayStore`); with ``scan_files=True`` it checks this on
the bytes of the database, its WAL and shared-memory file
(:meth:`~securemsg.relay.store.RelayStore.scan_residue`) and reports any residue found.

The report also states what is *not* held, and compares with Signal's published answer to
legal demands (account creation date and last connection date only: the relay here holds a
little more while messages wait in a mailbox, and says so).

:data:`SCHEMA_CLASSIFICATION` classifies every column of the relay schema as public key,
account metadata, opaque ciphertext or operational; :func:`unclassified_columns` lists the
columns of a live store that are missing from it (a test requires none), so a schema change
cannot add a column nobody has thought about.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import Enum

from securemsg.crypto.ecvrf import VrfPrivateKey
from securemsg.errors import UsageError
from securemsg.kt.config import blake3_hash, commitment, commitment_nonce, vrf_input
from securemsg.relay.store import FileScan, KeyRow, QueuedMessage, RelayStore
from securemsg.relay_protocol.frames import EnvelopeType

__all__ = [
    "NOT_HELD",
    "NOT_SCANNED",
    "SCHEMA_CLASSIFICATION",
    "SIGNAL_COMPARISON",
    "ColumnClass",
    "DisclosureReport",
    "disclose",
    "unclassified_columns",
]

SENDER_UNKNOWN = "sender not known to the relay"


class ColumnClass(Enum):
    """What kind of data a column holds."""

    PUBLIC_KEY = "public-key"
    ACCOUNT_METADATA = "account-metadata"
    OPAQUE_CIPHERTEXT = "opaque-ciphertext"
    OPERATIONAL = "operational"


_PK = ColumnClass.PUBLIC_KEY
_MD = ColumnClass.ACCOUNT_METADATA
_CT = ColumnClass.OPAQUE_CIPHERTEXT
_OP = ColumnClass.OPERATIONAL

#: Every (table, column) of the relay schema with its class and a note.
SCHEMA_CLASSIFICATION: dict[tuple[str, str], tuple[ColumnClass, str]] = {
    ("schema_version", "singleton"): (_OP, "constant 1"),
    ("schema_version", "version"): (_OP, "schema version number"),
    ("server_keys", "singleton"): (_OP, "constant 1"),
    ("server_keys", "trust_root_private"): (_OP, "the relay's own signing key; decrypts nothing"),
    ("server_keys", "trust_root_public"): (_OP, "the relay's trust root, pinned by clients"),
    ("server_keys", "server_key_id"): (_OP, "server certificate id"),
    ("server_keys", "server_private"): (_OP, "the relay's own signing key; decrypts nothing"),
    ("server_keys", "server_public"): (_OP, "the relay's certificate-signing public key"),
    ("server_keys", "server_certificate"): (_OP, "public certificate of the server key"),
    ("accounts", "aci"): (_MD, "account identifier (random UUID)"),
    ("accounts", "identity_key"): (_PK, "identity public key"),
    ("accounts", "access_key_digest"): (_MD, "HMAC-SHA256 digest of the access key"),
    ("accounts", "created_date"): (_MD, "creation date (day only)"),
    ("accounts", "queued"): (
        _MD,
        "bytes of the envelopes queued for the account's devices, for its share of the "
        "relay's budget",
    ),
    ("devices", "aci"): (_MD, "account identifier"),
    ("devices", "device_id"): (_MD, "device number"),
    ("devices", "registration_id"): (_MD, "14-bit registration id (public protocol value)"),
    ("devices", "created_date"): (_MD, "creation date (day only)"),
    ("devices", "last_seen_date"): (_MD, "last authentication date (day only)"),
    **{
        (t, c): cls
        for t in (
            "signed_pre_keys",
            "last_resort_kyber_pre_keys",
            "one_time_pre_keys",
            "one_time_kyber_pre_keys",
        )
        for c, cls in (
            ("aci", (_MD, "account identifier")),
            ("device_id", (_MD, "device number")),
            ("key_id", (_PK, "prekey id")),
            ("public_key", (_PK, "public prekey")),
            ("signature", (_PK, "identity signature over the public prekey")),
        )
        if not (t == "one_time_pre_keys" and c == "signature")
    },
    ("messages", "seq"): (_OP, "queue order"),
    ("messages", "id"): (_OP, "random envelope id (for acknowledgement)"),
    ("messages", "aci"): (_MD, "recipient account"),
    ("messages", "device_id"): (_MD, "recipient device"),
    ("messages", "type"): (_MD, "envelope type (sealed or identified kind)"),
    ("messages", "source_aci"): (_MD, "sender account of identified messages; NULL if sealed"),
    ("messages", "source_device_id"): (_MD, "sender device of identified messages; 0 if sealed"),
    ("messages", "client_timestamp"): (_MD, "sender-supplied timestamp, relayed as is"),
    ("messages", "received_at"): (_MD, "relay receive time (ms), for expiry"),
    ("messages", "body"): (
        _CT,
        "end-to-end encrypted envelope (for a multi-recipient send, this recipient's part)",
    ),
    ("messages", "shared_seq"): (_OP, "the shared body this envelope ends with, if any"),
    ("messages", "size"): (_MD, "size of the whole envelope body in bytes"),
    ("shared_bodies", "seq"): (_OP, "row number"),
    ("shared_bodies", "body"): (
        _CT,
        "encrypted part common to a multi-recipient send, stored once; deleted with the last "
        "envelope that refers to it",
    ),
    ("queue_usage", "singleton"): (_OP, "constant 1 (SQLite)"),
    ("queue_usage", "shard"): (_OP, "0-15: rows relay instances add to (PostgreSQL)"),
    ("queue_usage", "stored_bytes"): (_OP, "bytes of all queued envelopes, for the relay's budget"),
    ("kt_keys", "singleton"): (_OP, "constant 1"),
    ("kt_keys", "vrf_seed"): (_OP, "the directory's own VRF key; decrypts nothing"),
    ("kt_keys", "head_seed"): (_OP, "the directory's own head-signing key; decrypts nothing"),
    ("kt_nodes", "node_key"): (_OP, "trie node label (a VRF output, not an account id)"),
    ("kt_nodes", "left_key"): (_OP, "trie child label"),
    ("kt_nodes", "right_key"): (_OP, "trie child label"),
    ("kt_nodes", "commitment"): (_PK, "hiding commitment to a published identity key"),
    ("kt_nodes", "value"): (_OP, "trie node hash"),
    ("kt_nodes", "digest"): (_OP, "trie node hash"),
    ("kt_nodes", "label_hash"): (_OP, "hash of the node label"),
    ("kt_nodes", "last_epoch"): (_OP, "epoch the subtree last changed"),
    ("kt_nodes", "min_epoch"): (_OP, "oldest leaf epoch below the node"),
    ("kt_values", "label"): (_MD, "account identifier (directory label)"),
    ("kt_values", "version"): (_MD, "version number of the account's published identity key"),
    ("kt_values", "epoch"): (_MD, "epoch the version was published in"),
    ("kt_values", "value"): (_PK, "published identity public key"),
    ("kt_epochs", "epoch"): (_OP, "epoch number"),
    ("kt_epochs", "root_hash"): (_OP, "the directory's root hash at that epoch"),
    ("kt_epochs", "signed_head"): (_OP, "signed epoch head (epoch, root, time, previous head)"),
    ("kt_cosignatures", "epoch"): (_OP, "epoch cosigned"),
    ("kt_cosignatures", "auditor_key"): (_OP, "auditor's public key"),
    ("kt_cosignatures", "signature"): (_OP, "auditor's cosignature of the head"),
    ("kt_pending", "label"): (_MD, "account identifier, until its key is published"),
    ("kt_pending", "value"): (_PK, "identity public key waiting for the next epoch"),
    ("linking_codes", "aci"): (_MD, "account whose primary asked to link a device"),
    ("linking_codes", "digest"): (
        _OP,
        "HMAC-SHA256 digest of the one-time linking code; deleted when used, replaced or expired",
    ),
    ("linking_codes", "expires"): (_MD, "when the linking code expires (ms, 10 minutes on)"),
    ("provisioning_addresses", "digest"): (
        _OP,
        "SHA-256 digest of a random provisioning address, linked to no account (PostgreSQL "
        "only, an unlogged table); deleted on delivery, when its connection closes or expiry",
    ),
    ("provisioning_addresses", "expires"): (_OP, "when the provisioning address expires (ms)"),
}

#: What the relay does not hold, for any account.
NOT_HELD: tuple[str, ...] = (
    "message contents (plaintext) of any message",
    "messages after the recipient device acknowledged them, in any file the relay writes "
    "(the row is overwritten and the write-ahead log truncated at once)",
    "messages older than 30 days that were never delivered (deleted and overwritten the same "
    "way by the expiry sweep)",
    "the sender of sealed-sender messages",
    "private keys of any client (identity, prekeys, sessions, sender keys)",
    "session state, ratchet keys, message keys",
    "contacts, address books, profiles, names, phone numbers",
    "group membership, group names, group keys",
    "IP addresses, connection logs, user agents",
    "times of day of account creation or last connection (dates only)",
    "the unidentified-access key itself (only a digest of it)",
    "passwords (authentication is a signature by the identity key)",
    "rate-limit counters (memory only, gone on restart)",
    "provisioning addresses and envelopes (linking a new device): held in the relay's memory "
    "only until delivered once, expired (10 minutes) or their connection closed; never in "
    "the relay's SQLite files (on PostgreSQL: a digest of the address in an unlogged table, "
    "and an envelope another instance delivers passes through PostgreSQL's notification "
    "queue until every instance has read it)",
    "removed devices: their row, prekeys and queued messages are deleted when the primary "
    "removes them (kept in the files no longer than acknowledged messages); no tombstone or "
    "list of past devices is kept",
    "linking codes themselves (only a digest, until used, replaced or expired)",
)

#: Signal's published answer to legal demands, and how this relay compares.
SIGNAL_COMPARISON = (
    "Signal states that the only account data it can produce is the date the account was "
    "created and the date it last connected to the service. This relay holds the same two "
    "dates (per device), plus what any relay must hold to work: the account's public keys "
    "(public by design), an access-key digest, and, only until delivered or expired, the "
    "encrypted envelopes waiting in its mailboxes (sizes and receive times; for identified "
    "messages the sender's account and device)."
)


@dataclass(frozen=True, slots=True)
class _Key:
    kind: str
    key_id: int
    public_key: str
    signature: str


@dataclass(frozen=True, slots=True)
class _Device:
    device_id: int
    registration_id: int
    created_date: str
    last_seen_date: str
    keys: tuple[_Key, ...]


@dataclass(frozen=True, slots=True)
class _Queued:
    recipient: str
    recipient_device_id: int
    type: str
    size_bytes: int
    received_at: str
    sender: str
    client_timestamp: int


@dataclass(frozen=True, slots=True)
class _KtVersion:
    version: int
    epoch: int
    identity_key: str
    commitment: str


@dataclass(frozen=True, slots=True)
class _KtEntry:
    versions: tuple[_KtVersion, ...]
    queued_identity_key: str | None


@dataclass(frozen=True, slots=True)
class _FilesScan:
    searched_for: tuple[str, ...]
    files: tuple[tuple[str, int], ...]
    residue: tuple[tuple[str, int], ...]


#: What the report says about the files when they were not scanned.
NOT_SCANNED = (
    "nothing by design: deleted rows and freed pages are overwritten (secure_delete) and the "
    "write-ahead log is checkpointed and truncated after every deletion; run with "
    "--scan-files to check the bytes of the database, WAL and shared-memory files"
)

_FORMS = ("16 bytes", "hex", "hex (upper case)", "UUID text", "UUID text (upper case)")


def _forms(raw: bytes) -> list[bytes]:
    text = str(uuid.UUID(bytes=raw))
    hexed = raw.hex()
    return [raw, hexed.encode(), hexed.upper().encode(), text.encode(), text.upper().encode()]


@dataclass(frozen=True, slots=True)
class DisclosureReport:
    """Everything held about one account (see the module docstring).

    Attributes:
        aci: the account asked about.
        found: whether the relay knows the account.
        created_date: the account's creation date, or None.
        identity_key: hex of the identity public key, or None.
        access_key: how the access key is held.
        devices: each device's dates and public keys.
        queued_for_account: envelopes waiting for the account's devices.
        queued_from_account: identified envelopes the account sent, still waiting.
        linking_code_expires: if the account's primary asked for a linking code that is
            not used yet, when it expires (the code itself is held only as a digest).
        key_transparency: the account's entries in the relay's key-transparency directory:
            each published version of its identity key (version, epoch, key, and the
            commitment the directory published), and a key queued for the next epoch; None
            if the relay keeps no directory.
        file_scan: if the files were scanned, what was searched for, the files (name, bytes)
            and any residue (file, occurrences of the account's identifier in no live row).
        not_held: what the relay does not hold.
        signal_comparison: the comparison with Signal's published answer.
    """

    aci: str
    found: bool
    created_date: str | None
    identity_key: str | None
    access_key: str | None
    devices: tuple[_Device, ...] = ()
    queued_for_account: tuple[_Queued, ...] = ()
    queued_from_account: tuple[_Queued, ...] = field(default=())
    key_transparency: _KtEntry | None = None
    file_scan: _FilesScan | None = None
    linking_code_expires: str | None = None
    not_held: tuple[str, ...] = NOT_HELD
    files_note: str = NOT_SCANNED
    signal_comparison: str = SIGNAL_COMPARISON

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)

    def to_json(self) -> str:
        """Deterministic JSON (sorted keys, two-space indent)."""
        return json.dumps(self.to_dict(), sort_keys=True, indent=2) + "\n"

    def to_text(self) -> str:
        """A human-readable report (long keys shortened to a prefix and their length)."""
        lines = [f"Disclosure report for account {self.aci}", ""]
        if not self.found:
            lines.append("The relay holds no account with this identifier.")
        else:
            lines += [
                f"Account created (date only): {self.created_date}",
                f"Identity public key:         {_short(self.identity_key or '')}",
                f"Unidentified-access key:     {self.access_key}",
                "",
                f"Devices ({len(self.devices)}; device 1 is the primary, which links and "
                "removes the others):",
            ]
            for d in self.devices:
                lines.append(
                    f"  device {d.device_id}: registration id {d.registration_id}, "
                    f"created {d.created_date}, last seen {d.last_seen_date}"
                )
                for k in d.keys:
                    lines.append(f"    {k.kind} #{k.key_id}: {_short(k.public_key)}")
            code = self.linking_code_expires
            lines.append(
                "Open linking code: "
                + ("none" if code is None else f"expires {code} (held only as a digest)")
            )
        lines += ["", f"Messages queued for this account ({len(self.queued_for_account)}):"]
        lines += [_queued_line(q) for q in self.queued_for_account] or ["  none"]
        lines += [
            "",
            f"Identified messages from this account still queued "
            f"({len(self.queued_from_account)}):",
        ]
        lines += [_queued_line(q) for q in self.queued_from_account] or ["  none"]
        lines += _kt_lines(self.key_transparency)
        lines += ["", "Recoverable from the relay's files beyond the above:"]
        lines += _scan_lines(self.file_scan, self.files_note)
        lines += ["", "Not held by the relay:"]
        lines += [f"  - {item}" for item in self.not_held]
        lines += ["", "Compared with Signal's published answer:", f"  {self.signal_comparison}"]
        return "\n".join(lines) + "\n"


def _short(hex_text: str) -> str:
    return f"{hex_text[:16]}... ({len(hex_text) // 2} bytes)" if len(hex_text) > 24 else hex_text


def _kt_lines(entry: _KtEntry | None) -> list[str]:
    if entry is None:
        return []
    out = ["", f"Key-transparency directory entries ({len(entry.versions)} published):"]
    for v in entry.versions:
        out.append(
            f"  version {v.version}, epoch {v.epoch}: identity key {_short(v.identity_key)}, "
            f"commitment {_short(v.commitment)}"
        )
    if not entry.versions:
        out.append("  none published")
    if entry.queued_identity_key is not None:
        out.append(f"  queued for the next epoch: {_short(entry.queued_identity_key)}")
    return out


def _kt_entry(store: RelayStore, raw: bytes) -> _KtEntry | None:
    kt = store.kt_store()
    if kt is None:
        return None
    keys = kt.keys()
    if keys is None:
        return None
    vrf = VrfPrivateKey(keys[0])
    commitment_key = blake3_hash(keys[0])
    versions = []
    for state in kt.value_states(raw):
        fresh = int.from_bytes(vrf.hash(vrf_input(raw, True, state.version))[:32], "big")
        nonce = commitment_nonce(commitment_key, fresh, state.version, state.value)
        versions.append(
            _KtVersion(
                state.version,
                state.epoch,
                state.value.hex(),
                commitment(state.value, nonce).hex(),
            )
        )
    queued = kt.pending_value(raw)
    return _KtEntry(tuple(versions), None if queued is None else queued.hex())


def _queued_line(q: _Queued) -> str:
    return (
        f"  to {q.recipient} device {q.recipient_device_id}: {q.type}, {q.size_bytes} bytes, "
        f"received {q.received_at}, from {q.sender}"
    )


def _scan_lines(scan: _FilesScan | None, note: str) -> list[str]:
    if scan is None:
        return ["  " + note]
    files = ", ".join(f"{name} ({size} bytes)" for name, size in scan.files)
    what = "the account's identifier (" + ", ".join(scan.searched_for) + ")"
    if not scan.residue:
        return [f"  nothing: {what} appears in no byte of {files} outside the rows above"]
    out = [f"  RESIDUE: {what} appears outside the rows above:"]
    out += [f"    {name}: {count} occurrence(s)" for name, count in scan.residue]
    out.append(f"  (scanned {files})")
    return out


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _type_name(t: int) -> str:
    try:
        return EnvelopeType(t).name
    except ValueError:
        return f"type {t}"


def _queued(m: QueuedMessage) -> _Queued:
    if m.source_aci is None:
        sender = SENDER_UNKNOWN
    else:
        sender = f"{uuid.UUID(bytes=m.source_aci)} device {m.source_device_id}"
    return _Queued(
        recipient=str(uuid.UUID(bytes=m.aci)),
        recipient_device_id=m.device_id,
        type=_type_name(m.type),
        size_bytes=len(m.body),
        received_at=_iso(m.received_at),
        sender=sender,
        client_timestamp=m.client_timestamp,
    )


def _keys(kind: str, rows: list[KeyRow]) -> list[_Key]:
    return [_Key(kind, k.key_id, k.public_key.hex(), k.signature.hex()) for k in rows]


def disclose(
    store: RelayStore, aci: bytes | str | uuid.UUID, *, scan_files: bool = False
) -> DisclosureReport:
    """Everything ``store`` holds about the account ``aci`` (16 bytes, UUID or its string).

    With ``scan_files``, also search the bytes of every file the store writes for the
    account's identifier outside its live rows (:meth:`RelayStore.scan_residue`).

    Raises:
        UsageError: ``aci`` is not a UUID, its string, or 16 bytes.
        StorageError: the store failed.
    """
    raw = _aci_bytes(aci)
    text = str(uuid.UUID(bytes=raw))
    account = store.get_account(raw)
    queued_for = tuple(_queued(m) for m in store.queued_for(raw))
    queued_from = tuple(_queued(m) for m in store.queued_from(raw))
    kt_entry = _kt_entry(store, raw)
    scan = _scan(store.scan_residue(_forms(raw))) if scan_files else None
    # A store whose deletions are not overwrites (PostgreSQL) says what its files may keep.
    note = getattr(store, "files_note", NOT_SCANNED)
    deleted = getattr(store, "deleted_not_held", None)
    not_held = NOT_HELD
    if deleted is not None:
        not_held = (NOT_HELD[0], *deleted, *NOT_HELD[3:])
    if account is None:
        return DisclosureReport(
            text,
            False,
            None,
            None,
            None,
            (),
            queued_for,
            queued_from,
            key_transparency=kt_entry,
            file_scan=scan,
            not_held=not_held,
            files_note=note,
        )
    devices = []
    for d in store.list_devices(raw):
        keys = store.all_keys(raw, d.device_id)
        devices.append(
            _Device(
                d.device_id,
                d.registration_id,
                d.created_date,
                d.last_seen_date,
                tuple(
                    _keys("signed prekey", keys["signed_pre_keys"])
                    + _keys("last-resort Kyber prekey", keys["last_resort_kyber_pre_keys"])
                    + _keys("one-time prekey", keys["one_time_pre_keys"])
                    + _keys("one-time Kyber prekey", keys["one_time_kyber_pre_keys"])
                ),
            )
        )
    expires = store.linking_code_expiry(raw)
    return DisclosureReport(
        aci=text,
        found=True,
        created_date=account.created_date,
        identity_key=account.identity_key.hex(),
        access_key="held only as an HMAC-SHA256 digest; the key itself is not held",
        devices=tuple(devices),
        queued_for_account=queued_for,
        queued_from_account=queued_from,
        key_transparency=kt_entry,
        file_scan=scan,
        not_held=not_held,
        files_note=note,
        linking_code_expires=None if expires is None else _iso(expires),
    )


def _scan(found: FileScan) -> _FilesScan:
    return _FilesScan(_FORMS, found.files, found.residue)


def _aci_bytes(aci: bytes | str | uuid.UUID) -> bytes:
    if isinstance(aci, uuid.UUID):
        return aci.bytes
    if isinstance(aci, bytes | bytearray) and len(aci) == 16:
        return bytes(aci)
    if isinstance(aci, str):
        try:
            return uuid.UUID(aci).bytes
        except ValueError:
            raise UsageError("not an ACI (UUID string)") from None
    raise UsageError("aci must be a UUID, its string form, or 16 bytes")


def unclassified_columns(store: RelayStore) -> list[tuple[str, str]]:
    """Columns of the live schema that :data:`SCHEMA_CLASSIFICATION` does not classify."""
    return sorted(
        (table, column)
        for table, columns in store.schema().items()
        for column in columns
        if (table, column) not in SCHEMA_CLASSIFICATION
    )
