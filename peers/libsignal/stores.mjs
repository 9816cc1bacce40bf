// In-memory libsignal stores that can be written to and read back from JSON.
//
// Every record is held serialized (as libsignal's own tests do), so a snapshot of a store is a
// plain object of base64 strings and "restart from storage" is exact: the reloaded stores hold
// byte-for-byte what the running ones held.

import * as SignalClient from '@signalapp/libsignal-client';

const {
  IdentityChange,
  KyberPreKeyRecord,
  PreKeyRecord,
  PrivateKey,
  PublicKey,
  SenderKeyRecord,
  SessionRecord,
  SignedPreKeyRecord,
} = SignalClient;

export const b64 = (bytes) => Buffer.from(bytes).toString('base64');

// A record libsignal asked for is not stored (an unknown prekey id, a used one-time key, no
// session): the input is refused, not the peer broken.
export class MissingRecord extends Error {
  constructor(message, detail) {
    super(message);
    this.name = 'MissingRecord';
    this.detail = detail;
  }
}
const unb64 = (text) => Buffer.from(text, 'base64');

const mapToJson = (map) => Object.fromEntries([...map].map(([k, v]) => [k, b64(v)]));
const mapFromJson = (obj) => new Map(Object.entries(obj ?? {}).map(([k, v]) => [k, unb64(v)]));

// Trust on first use: an address's first identity key is saved; a different key afterwards is
// untrusted (libsignal then refuses with UntrustedIdentity) until the peer is told to trust it.
export class MemIdentityStore extends SignalClient.IdentityKeyStore {
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

export class MemSessionStore extends SignalClient.SessionStore {
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
      if (bytes === undefined) throw new MissingRecord(`no session with ${address.toString()}`, 'no_session');
      return SessionRecord.deserialize(bytes);
    });
  }
}

export class MemPreKeyStore extends SignalClient.PreKeyStore {
  constructor() {
    super();
    this.records = new Map(); // id (string) -> serialized PreKeyRecord
  }
  async savePreKey(id, record) {
    this.records.set(String(id), Buffer.from(record.serialize()));
  }
  async getPreKey(id) {
    const bytes = this.records.get(String(id));
    if (bytes === undefined) throw new MissingRecord(`no one-time prekey ${id}`, 'unknown_prekey');
    return PreKeyRecord.deserialize(bytes);
  }
  async removePreKey(id) {
    this.records.delete(String(id));
  }
}

export class MemSignedPreKeyStore extends SignalClient.SignedPreKeyStore {
  constructor() {
    super();
    this.records = new Map();
  }
  async saveSignedPreKey(id, record) {
    this.records.set(String(id), Buffer.from(record.serialize()));
  }
  async getSignedPreKey(id) {
    const bytes = this.records.get(String(id));
    if (bytes === undefined) throw new MissingRecord(`no signed prekey ${id}`, 'unknown_prekey');
    return SignedPreKeyRecord.deserialize(bytes);
  }
}

// One-time Kyber prekeys are removed once used; last-resort ones are kept, and a repeated
// (kyber id, signed id, base key) triple is refused.
export class MemKyberPreKeyStore extends SignalClient.KyberPreKeyStore {
  constructor() {
    super();
    this.records = new Map(); // id (string) -> serialized KyberPreKeyRecord
    this.lastResort = new Set(); // ids (strings) of last-resort keys
    this.usedLastResort = new Set();
  }
  async saveKyberPreKey(id, record, lastResort = false) {
    this.records.set(String(id), Buffer.from(record.serialize()));
    if (lastResort) this.lastResort.add(String(id));
    else this.lastResort.delete(String(id));
  }
  async getKyberPreKey(id) {
    const bytes = this.records.get(String(id));
    if (bytes === undefined) throw new MissingRecord(`no Kyber prekey ${id}`, 'unknown_prekey');
    return KyberPreKeyRecord.deserialize(bytes);
  }
  async markKyberPreKeyUsed(id, signedPreKeyId, baseKey) {
    const key = String(id);
    if (!this.records.has(key)) throw new MissingRecord(`no Kyber prekey ${id}`, 'unknown_prekey');
    if (!this.lastResort.has(key)) {
      this.records.delete(key);
      return;
    }
    const triple = `${key}:${signedPreKeyId}:${b64(baseKey.serialize())}`;
    if (this.usedLastResort.has(triple)) throw new MissingRecord('a last-resort Kyber prekey used twice with the same base key', 'kyber_reuse');
    this.usedLastResort.add(triple);
  }
}

export class MemSenderKeyStore extends SignalClient.SenderKeyStore {
  constructor() {
    super();
    this.records = new Map(); // "address::distribution id" -> serialized SenderKeyRecord
  }
  async saveSenderKey(sender, distributionId, record) {
    this.records.set(`${sender.toString()}::${distributionId}`, Buffer.from(record.serialize()));
  }
  async getSenderKey(sender, distributionId) {
    const bytes = this.records.get(`${sender.toString()}::${distributionId}`);
    return bytes === undefined ? null : SenderKeyRecord.deserialize(bytes);
  }
}

// All of one party's stores.
export class Stores {
  constructor(privateKey, registrationId) {
    this.identity = new MemIdentityStore(privateKey, registrationId);
    this.session = new MemSessionStore();
    this.preKey = new MemPreKeyStore();
    this.signedPreKey = new MemSignedPreKeyStore();
    this.kyberPreKey = new MemKyberPreKeyStore();
    this.senderKey = new MemSenderKeyStore();
  }

  toJson() {
    return {
      identity_private: b64(this.identity.privateKey.serialize()),
      registration_id: this.identity.registrationId,
      identities: mapToJson(this.identity.identities),
      sessions: mapToJson(this.session.sessions),
      pre_keys: mapToJson(this.preKey.records),
      signed_pre_keys: mapToJson(this.signedPreKey.records),
      kyber_pre_keys: mapToJson(this.kyberPreKey.records),
      kyber_last_resort: [...this.kyberPreKey.lastResort],
      kyber_used_last_resort: [...this.kyberPreKey.usedLastResort],
      sender_keys: mapToJson(this.senderKey.records),
    };
  }

  static fromJson(obj) {
    const stores = new Stores(PrivateKey.deserialize(unb64(obj.identity_private)), obj.registration_id);
    stores.identity.identities = mapFromJson(obj.identities);
    stores.session.sessions = mapFromJson(obj.sessions);
    stores.preKey.records = mapFromJson(obj.pre_keys);
    stores.signedPreKey.records = mapFromJson(obj.signed_pre_keys);
    stores.kyberPreKey.records = mapFromJson(obj.kyber_pre_keys);
    stores.kyberPreKey.lastResort = new Set(obj.kyber_last_resort ?? []);
    stores.kyberPreKey.usedLastResort = new Set(obj.kyber_used_last_resort ?? []);
    stores.senderKey.records = mapFromJson(obj.sender_keys);
    return stores;
  }
}
