#!/usr/bin/env node
// securemsg interop peer: drives the real libsignal (@signalapp/libsignal-client, pinned in
// package.json) for the Python interop tests.
//
// Protocol: newline-delimited JSON on stdin/stdout, one request per line, answered in order.
//   request  {"id": n, "op": "<name>", ...args}
//   response {"id": n, "ok": true, "result": {...}}
//         or {"id": n, "ok": false, "error": {"type": "...", "message": "...", "code": n|null}}
// Bytes travel as base64 strings. Logs (ours and libsignal's) go to stderr only.
// A bad request never kills the peer: it gets an error response with type "BadRequest".
// The ops are the entries of OPS below; tests/interop/README.md documents their arguments.

import * as readline from 'node:readline';
import * as SignalClient from '@signalapp/libsignal-client';
import { benchOps } from './ops_bench.mjs';
import { makeDeviceOps } from './ops_devices.mjs';
import { makeRetryOps } from './ops_retry.mjs';
import { makeSealedGroupOps } from './ops_sealed_groups.mjs';
import { makeVectorOps } from './ops_vectors.mjs';

const {
  CiphertextMessageType,
  Direction,
  IdentityChange,
  KEMKeyPair,
  KEMPublicKey,
  KyberPreKeyRecord,
  LibSignalErrorBase,
  PreKeyBundle,
  PreKeyRecord,
  PreKeySignalMessage,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  SenderKeyRecord,
  SessionRecord,
  SignalMessage,
  SignedPreKeyRecord,
} = SignalClient;

const LIBSIGNAL_VERSION = '0.103.0';

// ---------------------------------------------------------------------------------------------
// helpers

class BadRequest extends Error {
  constructor(message) {
    super(message);
    this.name = 'BadRequest';
  }
}

function log(...parts) {
  process.stderr.write(`[peer] ${parts.join(' ')}\n`);
}

function b64(bytes) {
  return Buffer.from(bytes).toString('base64');
}

function bytesArg(args, key, { optional = false } = {}) {
  const value = args[key];
  if (value === undefined || value === null) {
    if (optional) return null;
    throw new BadRequest(`missing bytes argument '${key}'`);
  }
  if (typeof value !== 'string') throw new BadRequest(`'${key}' must be a base64 string`);
  return fromB64(value, key);
}

function fromB64(value, what) {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
    throw new BadRequest(`'${what}' is not valid base64`);
  }
  return Buffer.from(value, 'base64');
}

function intArg(args, key, { optional = false, fallback = null } = {}) {
  const value = args[key];
  if (value === undefined || value === null) {
    if (optional) return fallback;
    throw new BadRequest(`missing integer argument '${key}'`);
  }
  if (!Number.isSafeInteger(value)) throw new BadRequest(`'${key}' must be an integer`);
  return value;
}

function strArg(args, key) {
  const value = args[key];
  if (typeof value !== 'string') throw new BadRequest(`missing string argument '${key}'`);
  return value;
}

function listArg(args, key) {
  const value = args[key];
  if (!Array.isArray(value)) throw new BadRequest(`'${key}' must be a list`);
  return value;
}

function nowArg(args) {
  const ms = intArg(args, 'now_ms', { optional: true });
  return ms === null ? new Date() : new Date(ms);
}

function errorInfo(err) {
  if (err instanceof LibSignalErrorBase) {
    return { type: err.name, message: err.message, code: err.code, operation: err.operation };
  }
  if (err instanceof Error) return { type: err.name || 'Error', message: err.message, code: null };
  return { type: 'Error', message: String(err), code: null };
}

// Minimal protobuf reader, enough to report facts about a serialized libsignal SessionRecord
// (storage.proto: RecordStructure / SessionStructure). Returns Map<field, [values]>; varints as
// BigInt-free Numbers (all fields we read are small), length-delimited fields as Buffers.
function readProto(buf) {
  const fields = new Map();
  let pos = 0;
  const varint = () => {
    let result = 0;
    let shift = 0;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const byte = buf[pos++];
      result += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7;
    }
  };
  while (pos < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    let value;
    if (wire === 0) value = varint();
    else if (wire === 2) {
      const len = varint();
      value = buf.subarray(pos, pos + len);
      pos += len;
    } else if (wire === 1) {
      value = buf.subarray(pos, pos + 8);
      pos += 8;
    } else if (wire === 5) {
      value = buf.subarray(pos, pos + 4);
      pos += 4;
    } else throw new Error(`unsupported wire type ${wire}`);
    if (!fields.has(field)) fields.set(field, []);
    fields.get(field).push(value);
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------
// in-memory stores (serialized records in Maps, as libsignal's own tests do)

class MemIdentityStore extends SignalClient.IdentityKeyStore {
  constructor(privateKey, registrationId) {
    super();
    this.privateKey = privateKey;
    this.registrationId = registrationId;
    this.identities = new Map(); // address string -> serialized PublicKey
  }
  async getIdentityKey() {
    return this.privateKey;
  }
  async getLocalRegistrationId() {
    return this.registrationId;
  }
  async saveIdentity(address, key) {
    const name = address.toString();
    const old = this.identities.get(name);
    const fresh = Buffer.from(key.serialize());
    this.identities.set(name, fresh);
    return old !== undefined && !old.equals(fresh)
      ? IdentityChange.ReplacedExisting
      : IdentityChange.NewOrUnchanged;
  }
  async isTrustedIdentity(address, key, _direction) {
    const known = this.identities.get(address.toString());
    return known === undefined || known.equals(Buffer.from(key.serialize()));
  }
  async getIdentity(address) {
    const known = this.identities.get(address.toString());
    return known === undefined ? null : PublicKey.deserialize(known);
  }
}

class MemSessionStore extends SignalClient.SessionStore {
  constructor() {
    super();
    this.sessions = new Map(); // address string -> serialized SessionRecord
  }
  async saveSession(address, record) {
    this.sessions.set(address.toString(), Buffer.from(record.serialize()));
  }
  async getSession(address) {
    const bytes = this.sessions.get(address.toString());
    return bytes === undefined ? null : SessionRecord.deserialize(bytes);
  }
  async getExistingSessions(addresses) {
    return addresses.map((address) => {
      const bytes = this.sessions.get(address.toString());
      if (bytes === undefined) throw new Error(`no session for ${address.toString()}`);
      return SessionRecord.deserialize(bytes);
    });
  }
}

class MemPreKeyStore extends SignalClient.PreKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async savePreKey(id, record) {
    this.records.set(id, Buffer.from(record.serialize()));
  }
  async getPreKey(id) {
    const bytes = this.records.get(id);
    if (bytes === undefined) throw new Error(`no pre key ${id}`);
    return PreKeyRecord.deserialize(bytes);
  }
  async removePreKey(id) {
    this.records.delete(id);
  }
}

class MemSignedPreKeyStore extends SignalClient.SignedPreKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async saveSignedPreKey(id, record) {
    this.records.set(id, Buffer.from(record.serialize()));
  }
  async getSignedPreKey(id) {
    const bytes = this.records.get(id);
    if (bytes === undefined) throw new Error(`no signed pre key ${id}`);
    return SignedPreKeyRecord.deserialize(bytes);
  }
}

// One-time Kyber prekeys are removed once used; last-resort ones are kept, and a repeated
// (kyber id, signed id, base key) triple is refused.
class MemKyberPreKeyStore extends SignalClient.KyberPreKeyStore {
  constructor() {
    super();
    this.records = new Map(); // id -> {bytes, lastResort}
    this.usedLastResort = new Set();
  }
  async saveKyberPreKey(id, record, lastResort = false) {
    this.records.set(id, { bytes: Buffer.from(record.serialize()), lastResort });
  }
  async getKyberPreKey(id) {
    const entry = this.records.get(id);
    if (entry === undefined) throw new Error(`no kyber pre key ${id}`);
    return KyberPreKeyRecord.deserialize(entry.bytes);
  }
  async markKyberPreKeyUsed(id, signedPreKeyId, baseKey) {
    const entry = this.records.get(id);
    if (entry === undefined) throw new Error(`no kyber pre key ${id}`);
    if (!entry.lastResort) {
      this.records.delete(id);
      return;
    }
    const triple = `${id}:${signedPreKeyId}:${b64(baseKey.serialize())}`;
    if (this.usedLastResort.has(triple)) throw new Error('kyber last-resort key reused');
    this.usedLastResort.add(triple);
  }
}

class MemSenderKeyStore extends SignalClient.SenderKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async saveSenderKey(sender, distributionId, record) {
    this.records.set(`${sender.toString()}::${distributionId}`, Buffer.from(record.serialize()));
  }
  async getSenderKey(sender, distributionId) {
    const bytes = this.records.get(`${sender.toString()}::${distributionId}`);
    return bytes === undefined ? null : SenderKeyRecord.deserialize(bytes);
  }
}

// ---------------------------------------------------------------------------------------------
// parties

const parties = new Map();

class Party {
  constructor(label, name, deviceId, privateKey, registrationId) {
    this.label = label;
    this.address = ProtocolAddress.new(name, deviceId);
    this.privateKey = privateKey;
    this.registrationId = registrationId;
    this.identityStore = new MemIdentityStore(privateKey, registrationId);
    this.sessionStore = new MemSessionStore();
    this.preKeyStore = new MemPreKeyStore();
    this.signedPreKeyStore = new MemSignedPreKeyStore();
    this.kyberPreKeyStore = new MemKyberPreKeyStore();
    this.senderKeyStore = new MemSenderKeyStore();
  }
  get identityKey() {
    return this.privateKey.getPublicKey();
  }
}

function partyArg(args) {
  const label = strArg(args, 'party');
  const party = parties.get(label);
  if (party === undefined) throw new BadRequest(`unknown party '${label}'`);
  return party;
}

function remoteArg(args) {
  const name = strArg(args, 'remote_name');
  const device = intArg(args, 'remote_device');
  return ProtocolAddress.new(name, device);
}

// ---------------------------------------------------------------------------------------------
// 1:1 session helpers

async function encryptOne(party, remote, plaintext, now) {
  const message = await SignalClient.signalEncrypt(
    plaintext,
    remote,
    party.address,
    party.sessionStore,
    party.identityStore,
    now,
  );
  return { type: message.type(), body: b64(message.serialize()) };
}

async function decryptOne(party, remote, type, body) {
  let plaintext;
  if (type === CiphertextMessageType.PreKey) {
    plaintext = await SignalClient.signalDecryptPreKey(
      PreKeySignalMessage.deserialize(body),
      remote,
      party.address,
      party.sessionStore,
      party.identityStore,
      party.preKeyStore,
      party.signedPreKeyStore,
      party.kyberPreKeyStore,
    );
  } else if (type === CiphertextMessageType.Whisper) {
    plaintext = await SignalClient.signalDecrypt(
      SignalMessage.deserialize(body),
      remote,
      party.address,
      party.sessionStore,
      party.identityStore,
    );
  } else {
    throw new BadRequest(`unsupported ciphertext type ${type} (expected 2 or 3)`);
  }
  return { plaintext: b64(plaintext) };
}

function bundleFromArgs(bundle) {
  if (bundle === null || typeof bundle !== 'object') throw new BadRequest("'bundle' must be an object");
  const preKeyId = intArg(bundle, 'pre_key_id', { optional: true });
  const preKeyPublic = bytesArg(bundle, 'pre_key_public', { optional: true });
  return PreKeyBundle.new(
    intArg(bundle, 'registration_id'),
    intArg(bundle, 'device_id'),
    preKeyId,
    preKeyPublic === null ? null : PublicKey.deserialize(preKeyPublic),
    intArg(bundle, 'signed_pre_key_id'),
    PublicKey.deserialize(bytesArg(bundle, 'signed_pre_key_public')),
    bytesArg(bundle, 'signed_pre_key_signature'),
    PublicKey.deserialize(bytesArg(bundle, 'identity_key')),
    intArg(bundle, 'kyber_pre_key_id'),
    KEMPublicKey.deserialize(bytesArg(bundle, 'kyber_pre_key_public')),
    bytesArg(bundle, 'kyber_pre_key_signature'),
  );
}

function sessionFacts(bytes, now) {
  if (bytes === undefined) return { exists: false };
  const record = SessionRecord.deserialize(bytes);
  const facts = {
    exists: true,
    record: b64(bytes),
    has_current_state: record.hasCurrentState(now),
    previous_sessions: 0,
  };
  const outer = readProto(bytes);
  facts.previous_sessions = (outer.get(2) ?? []).length;
  const current = outer.get(1);
  if (current === undefined) return facts;
  const s = readProto(current[0]);
  const first = (field) => (s.get(field) ?? [undefined])[0];
  facts.session_version = first(1) ?? 0;
  facts.local_identity_key = first(2) === undefined ? null : b64(first(2));
  facts.remote_identity_key = first(3) === undefined ? null : b64(first(3));
  facts.previous_counter = first(5) ?? 0;
  facts.has_sender_chain = first(6) !== undefined;
  facts.receiver_chains = (s.get(7) ?? []).length;
  facts.has_unacknowledged_pre_key = first(9) !== undefined;
  facts.has_pending_kyber_pre_key = first(14) !== undefined;
  facts.remote_registration_id = record.remoteRegistrationId();
  facts.local_registration_id = record.localRegistrationId();
  facts.alice_base_key = first(13) === undefined ? null : b64(first(13));
  facts.has_pq_ratchet_state = first(15) !== undefined && first(15).length > 0;
  if (first(6) !== undefined) {
    const chain = readProto(first(6));
    const ck = (chain.get(3) ?? [undefined])[0];
    facts.sender_chain_index = ck === undefined ? 0 : ((readProto(ck).get(1) ?? [0])[0] ?? 0);
  }
  return facts;
}

// ---------------------------------------------------------------------------------------------
// operations

function sign(args) {
  const key = PrivateKey.deserialize(bytesArg(args, 'private'));
  return b64(key.sign(bytesArg(args, 'message')));
}

function verify(args) {
  const key = PublicKey.deserialize(bytesArg(args, 'public'));
  return key.verify(bytesArg(args, 'message'), bytesArg(args, 'signature'));
}

// Runs fn on each item; one failing item is reported in place, never fatal for the batch.
async function perItem(items, fn) {
  const results = [];
  for (const item of items) {
    try {
      if (item === null || typeof item !== 'object') throw new BadRequest('item must be an object');
      results.push({ ok: true, ...(await fn(item)) });
    } catch (err) {
      results.push({ ok: false, error: errorInfo(err) });
    }
  }
  return results;
}

const OPS = {
  async ping() {
    return { libsignal_version: LIBSIGNAL_VERSION, ops: Object.keys(OPS).sort() };
  },

  // --- keys ---------------------------------------------------------------------------------
  async generate_keypair() {
    const key = PrivateKey.generate();
    return { public: b64(key.getPublicKey().serialize()), private: b64(key.serialize()) };
  },
  async generate_keypairs(args) {
    const count = intArg(args, 'count');
    if (count < 0 || count > 100000) throw new BadRequest("'count' must be in 0..100000");
    const pairs = [];
    for (let i = 0; i < count; i++) {
      const key = PrivateKey.generate();
      pairs.push({ public: b64(key.getPublicKey().serialize()), private: b64(key.serialize()) });
    }
    return { keypairs: pairs };
  },
  async public_key(args) {
    const key = PrivateKey.deserialize(bytesArg(args, 'private'));
    return { public: b64(key.getPublicKey().serialize()) };
  },
  async sign(args) {
    return { signature: sign(args) };
  },
  async verify(args) {
    return { valid: verify(args) };
  },
  async sign_many(args) {
    return { results: await perItem(listArg(args, 'items'), (i) => ({ signature: sign(i) })) };
  },
  async verify_many(args) {
    return { results: await perItem(listArg(args, 'items'), (i) => ({ valid: verify(i) })) };
  },
  async agree(args) {
    const key = PrivateKey.deserialize(bytesArg(args, 'private'));
    return { shared_secret: b64(key.agree(PublicKey.deserialize(bytesArg(args, 'public')))) };
  },

  // --- KEM (libsignal's JS API has key generation and (de)serialization only) ---------------
  async kem_generate() {
    const pair = KEMKeyPair.generate();
    return { public: b64(pair.getPublicKey().serialize()), secret: b64(pair.getSecretKey().serialize()) };
  },
  async kem_check_public(args) {
    const key = KEMPublicKey.deserialize(bytesArg(args, 'public'));
    return { public: b64(key.serialize()) };
  },

  // --- parties --------------------------------------------------------------------------------
  async create_party(args) {
    const label = strArg(args, 'party');
    if (parties.has(label)) throw new BadRequest(`party '${label}' already exists`);
    const identityPrivate = bytesArg(args, 'identity_private', { optional: true });
    const privateKey =
      identityPrivate === null ? PrivateKey.generate() : PrivateKey.deserialize(identityPrivate);
    let registrationId = intArg(args, 'registration_id', { optional: true });
    if (registrationId === null) registrationId = 1 + Math.floor(Math.random() * 0x3ffe);
    const party = new Party(label, strArg(args, 'name'), intArg(args, 'device_id'), privateKey, registrationId);
    parties.set(label, party);
    return {
      identity_key: b64(party.identityKey.serialize()),
      registration_id: registrationId,
      address: party.address.toString(),
    };
  },
  async delete_party(args) {
    return { deleted: parties.delete(strArg(args, 'party')) };
  },
  async export_identity(args) {
    const party = partyArg(args);
    return {
      identity_key: b64(party.identityKey.serialize()),
      identity_private: b64(party.privateKey.serialize()),
      registration_id: party.registrationId,
    };
  },
  async generate_bundle(args) {
    const party = partyArg(args);
    const timestamp = intArg(args, 'timestamp_ms', { optional: true, fallback: Date.now() });
    const bundle = {
      registration_id: party.registrationId,
      device_id: party.address.deviceId(),
      pre_key_id: null,
      pre_key_public: null,
      identity_key: b64(party.identityKey.serialize()),
    };
    const preKeyId = intArg(args, 'pre_key_id', { optional: true });
    if (preKeyId !== null) {
      const key = PrivateKey.generate();
      await party.preKeyStore.savePreKey(preKeyId, PreKeyRecord.new(preKeyId, key.getPublicKey(), key));
      bundle.pre_key_id = preKeyId;
      bundle.pre_key_public = b64(key.getPublicKey().serialize());
    }
    const signedId = intArg(args, 'signed_pre_key_id');
    const signedKey = PrivateKey.generate();
    const signedSig = party.privateKey.sign(signedKey.getPublicKey().serialize());
    await party.signedPreKeyStore.saveSignedPreKey(
      signedId,
      SignedPreKeyRecord.new(signedId, timestamp, signedKey.getPublicKey(), signedKey, signedSig),
    );
    bundle.signed_pre_key_id = signedId;
    bundle.signed_pre_key_public = b64(signedKey.getPublicKey().serialize());
    bundle.signed_pre_key_signature = b64(signedSig);
    const kyberId = intArg(args, 'kyber_pre_key_id');
    const kyberPair = KEMKeyPair.generate();
    const kyberSig = party.privateKey.sign(kyberPair.getPublicKey().serialize());
    await party.kyberPreKeyStore.saveKyberPreKey(
      kyberId,
      KyberPreKeyRecord.new(kyberId, timestamp, kyberPair, kyberSig),
      args.kyber_last_resort === true,
    );
    bundle.kyber_pre_key_id = kyberId;
    bundle.kyber_pre_key_public = b64(kyberPair.getPublicKey().serialize());
    bundle.kyber_pre_key_signature = b64(kyberSig);
    return bundle;
  },
  // Stores prekey records serialized by someone else (e.g. securemsg's to_bytes()).
  async import_records(args) {
    const party = partyArg(args);
    const imported = { pre_keys: [], signed_pre_keys: [], kyber_pre_keys: [] };
    for (const item of args.pre_keys ?? []) {
      const record = PreKeyRecord.deserialize(fromB64(item, 'pre_keys[]'));
      await party.preKeyStore.savePreKey(record.id(), record);
      imported.pre_keys.push(record.id());
    }
    for (const item of args.signed_pre_keys ?? []) {
      const record = SignedPreKeyRecord.deserialize(fromB64(item, 'signed_pre_keys[]'));
      await party.signedPreKeyStore.saveSignedPreKey(record.id(), record);
      imported.signed_pre_keys.push(record.id());
    }
    for (const item of args.kyber_pre_keys ?? []) {
      const record = KyberPreKeyRecord.deserialize(fromB64(item, 'kyber_pre_keys[]'));
      await party.kyberPreKeyStore.saveKyberPreKey(record.id(), record, args.kyber_last_resort === true);
      imported.kyber_pre_keys.push(record.id());
    }
    return imported;
  },
  // Serialized records as libsignal stores them (for securemsg's from_bytes()).
  async export_records(args) {
    const party = partyArg(args);
    const all = (map, pick = (v) => v) => Object.fromEntries([...map].map(([k, v]) => [k, b64(pick(v))]));
    return {
      pre_keys: all(party.preKeyStore.records),
      signed_pre_keys: all(party.signedPreKeyStore.records),
      kyber_pre_keys: all(party.kyberPreKeyStore.records, (v) => v.bytes),
    };
  },
  async check_records(args) {
    // Parses records without storing them; returns what libsignal reads from them.
    const out = {};
    const pk = bytesArg(args, 'pre_key', { optional: true });
    if (pk !== null) {
      const r = PreKeyRecord.deserialize(pk);
      out.pre_key = { id: r.id(), public: b64(r.publicKey().serialize()), private: b64(r.privateKey().serialize()) };
    }
    const spk = bytesArg(args, 'signed_pre_key', { optional: true });
    if (spk !== null) {
      const r = SignedPreKeyRecord.deserialize(spk);
      out.signed_pre_key = {
        id: r.id(),
        timestamp: r.timestamp(),
        public: b64(r.publicKey().serialize()),
        private: b64(r.privateKey().serialize()),
        signature: b64(r.signature()),
      };
    }
    const kpk = bytesArg(args, 'kyber_pre_key', { optional: true });
    if (kpk !== null) {
      const r = KyberPreKeyRecord.deserialize(kpk);
      out.kyber_pre_key = {
        id: r.id(),
        timestamp: r.timestamp(),
        public: b64(r.publicKey().serialize()),
        secret: b64(r.secretKey().serialize()),
        signature: b64(r.signature()),
      };
    }
    return out;
  },

  // --- identities -----------------------------------------------------------------------------
  async trust(args) {
    const party = partyArg(args);
    const change = await party.identityStore.saveIdentity(
      remoteArg(args),
      PublicKey.deserialize(bytesArg(args, 'identity_key')),
    );
    return { replaced: change === IdentityChange.ReplacedExisting };
  },
  async remove_identity(args) {
    const party = partyArg(args);
    return { removed: party.identityStore.identities.delete(remoteArg(args).toString()) };
  },
  async get_identity(args) {
    const party = partyArg(args);
    const key = await party.identityStore.getIdentity(remoteArg(args));
    return { identity_key: key === null ? null : b64(key.serialize()) };
  },
  async is_trusted(args) {
    const party = partyArg(args);
    const direction = args.direction === 'sending' ? Direction.Sending : Direction.Receiving;
    const key = PublicKey.deserialize(bytesArg(args, 'identity_key'));
    return { trusted: await party.identityStore.isTrustedIdentity(remoteArg(args), key, direction) };
  },

  // --- 1:1 sessions ---------------------------------------------------------------------------
  async process_bundle(args) {
    const party = partyArg(args);
    await SignalClient.processPreKeyBundle(
      bundleFromArgs(args.bundle),
      remoteArg(args),
      party.address,
      party.sessionStore,
      party.identityStore,
      nowArg(args),
    );
    return {};
  },
  async encrypt(args) {
    const party = partyArg(args);
    return encryptOne(party, remoteArg(args), bytesArg(args, 'plaintext'), nowArg(args));
  },
  async decrypt(args) {
    const party = partyArg(args);
    return decryptOne(party, remoteArg(args), intArg(args, 'type'), bytesArg(args, 'body'));
  },
  // Either `plaintexts: [b64...]`, or `count` + `plaintext` (the same plaintext count times).
  // `keep: [indices]` returns only those results (for very long runs); default: all.
  async encrypt_many(args) {
    const party = partyArg(args);
    const remote = remoteArg(args);
    const now = nowArg(args);
    let plaintexts = args.plaintexts;
    if (plaintexts === undefined) {
      const count = intArg(args, 'count');
      if (count < 0 || count > 100000) throw new BadRequest("'count' must be in 0..100000");
      const plaintext = args.plaintext ?? '';
      plaintexts = { length: count, at: () => plaintext };
    } else if (!Array.isArray(plaintexts)) {
      throw new BadRequest("'plaintexts' must be a list");
    } else {
      const list = plaintexts;
      plaintexts = { length: list.length, at: (i) => list[i] };
    }
    const keep = args.keep === undefined || args.keep === null ? null : new Set(listArg(args, 'keep'));
    const results = [];
    for (let i = 0; i < plaintexts.length; i++) {
      let result;
      try {
        result = { ok: true, ...(await encryptOne(party, remote, fromB64(plaintexts.at(i), 'plaintext'), now)) };
      } catch (err) {
        result = { ok: false, error: errorInfo(err) };
      }
      if (keep === null) results.push(result);
      else if (keep.has(i)) results.push({ index: i, ...result });
    }
    return { results };
  },
  // `messages: [{type, body}]`, decrypted in order; failures reported per item.
  async decrypt_many(args) {
    const party = partyArg(args);
    const remote = remoteArg(args);
    return {
      results: await perItem(listArg(args, 'messages'), (m) =>
        decryptOne(party, remote, intArg(m, 'type'), bytesArg(m, 'body')),
      ),
    };
  },
  async archive_session(args) {
    const party = partyArg(args);
    const remote = remoteArg(args);
    const record = await party.sessionStore.getSession(remote);
    if (record === null) return { archived: false };
    record.archiveCurrentState();
    await party.sessionStore.saveSession(remote, record);
    return { archived: true };
  },
  async delete_session(args) {
    const party = partyArg(args);
    return { deleted: party.sessionStore.sessions.delete(remoteArg(args).toString()) };
  },
  async has_session(args) {
    const party = partyArg(args);
    const record = await party.sessionStore.getSession(remoteArg(args));
    return { has_session: record !== null && record.hasCurrentState(nowArg(args)) };
  },
  async session_facts(args) {
    const party = partyArg(args);
    return sessionFacts(party.sessionStore.sessions.get(remoteArg(args).toString()), nowArg(args));
  },
  async get_session_record(args) {
    const party = partyArg(args);
    const bytes = party.sessionStore.sessions.get(remoteArg(args).toString());
    return { record: bytes === undefined ? null : b64(bytes) };
  },
  async set_session_record(args) {
    const party = partyArg(args);
    const record = SessionRecord.deserialize(bytesArg(args, 'record'));
    await party.sessionStore.saveSession(remoteArg(args), record);
    return {};
  },
};
Object.assign(OPS, benchOps({ SignalClient, Party, BadRequest })); // ops_bench.mjs: bench_*
Object.assign(OPS, makeSealedGroupOps({ b64, bytesArg, intArg, strArg, listArg, partyArg, remoteArg, perItem, BadRequest })); // ops_sealed_groups.mjs: ss_*, skdm_*, group_*, fingerprint*
Object.assign(OPS, makeVectorOps({ b64, bytesArg, intArg, partyArg, BadRequest })); // ops_vectors.mjs: import_raw_keys, kem_check_secret
Object.assign(OPS, makeRetryOps({ b64, bytesArg, intArg })); // ops_retry.mjs: dem_*
Object.assign(OPS, makeDeviceOps({ b64, bytesArg, intArg, strArg, listArg, partyArg, perItem, Party, parties, BadRequest, decryptOne })); // ops_devices.mjs: dev_*

// ---------------------------------------------------------------------------------------------
// main loop: one request at a time, answered in order

function send(response) {
  process.stdout.write(`${JSON.stringify(response)}\n`);
}

async function handle(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    send({ id: null, ok: false, error: { type: 'BadRequest', message: `invalid JSON: ${err.message}`, code: null } });
    return;
  }
  const id = request !== null && typeof request === 'object' && 'id' in request ? request.id : null;
  try {
    if (request === null || typeof request !== 'object' || Array.isArray(request)) {
      throw new BadRequest('request must be a JSON object');
    }
    const op = request.op;
    if (typeof op !== 'string' || !Object.hasOwn(OPS, op)) throw new BadRequest(`unknown op ${JSON.stringify(op)}`);
    const result = await OPS[op](request);
    send({ id, ok: true, result });
  } catch (err) {
    if (!(err instanceof BadRequest) && !(err instanceof LibSignalErrorBase) && process.env.PEER_DEBUG) {
      log('error in', request && request.op, err.stack);
    }
    send({ id, ok: false, error: errorInfo(err) });
  }
}

function main() {
  const levelName = process.env.PEER_LOG_LEVEL ?? 'Warn';
  const level = SignalClient.LogLevel[levelName] ?? SignalClient.LogLevel.Warn;
  SignalClient.initLogger(level, (lvl, target, file, line, message) => {
    log(`libsignal[${SignalClient.LogLevel[lvl]}] ${target}: ${message}`);
  });
  process.on('uncaughtException', (err) => log('uncaught exception:', err && err.stack));
  process.on('unhandledRejection', (err) => log('unhandled rejection:', err && err.stack));

  const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  let chain = Promise.resolve();
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    chain = chain.then(() => handle(line));
  });
  rl.on('close', () => {
    chain.then(() => process.exit(0));
  });
  log(`ready (libsignal ${LIBSIGNAL_VERSION}, node ${process.version})`);
}

main();
