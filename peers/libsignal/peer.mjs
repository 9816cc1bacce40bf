#!/usr/bin/env node
// The libsignal peer of the securemsg interop kit: the real @signalapp/libsignal-client
// (0.103.0, pinned in package.json) behind the protocol securemsg-interop/1
// (docs/interop-protocol.md in the securemsg repository).
//
//   node peer.mjs [--state FILE] [--max-line-bytes N]
//
// Theory of operation: one request per line on stdin, one answer per line on stdout, strictly
// in order (each request is finished before the next line is read); logs go to stderr. Every
// party (an independent user device) lives in memory as serialized libsignal records
// (stores.mjs); `restart` writes every party and issuer to the state file as JSON, drops all
// of it, and reads it back. The state file is --state, else libsignal-peer-state.json in
// $SECUREMSG_INTEROP_STATE_DIR (set by the kit), else in the current directory; when --state
// names an existing file the peer starts from it. It holds private keys: it is written with
// mode 0600, atomically (temporary file, then rename).
//
// Errors: a request the peer cannot understand is `internal`; an op it does not know is
// `unsupported`; libsignal's UntrustedIdentity is `untrusted_identity`; whatever else libsignal
// (or a store, for a missing prekey or session) refuses is `refused`. libsignal writes nothing
// on a refused decryption, so the stored state is unchanged. A line longer than
// --max-line-bytes (64 MiB by default) is answered with an `internal` error and skipped without
// being held in memory.

import * as fs from 'node:fs';
import * as path from 'node:path';
import * as SignalClient from '@signalapp/libsignal-client';
import SealedSenderMultiRecipientMessage from '@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js';
import { readLines, TooLong } from './lines.mjs';
import { b64, MissingRecord, Stores } from './stores.mjs';

const {
  CiphertextMessage,
  CiphertextMessageType,
  ErrorCode,
  Fingerprint,
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
  SenderCertificate,
  SenderKeyDistributionMessage,
  ServerCertificate,
  SignalMessage,
  SignedPreKeyRecord,
  UnidentifiedSenderMessageContent,
} = SignalClient;

export const PROTOCOL = 'securemsg-interop/1';
export const CAPABILITIES = [
  'session',
  'encrypt_many',
  'snapshot',
  'archive',
  'restart',
  'identity_change',
  'sealed_v1',
  'sealed_v2',
  'groups',
  'fingerprint',
];
const MAX_ENCRYPT_MANY = 100000;
const DEFAULT_MAX_LINE = 64 * 1024 * 1024;
const STATE_FILE = 'libsignal-peer-state.json';
const CONTENT_HINT_RESENDABLE = 1;

const here = path.dirname(new URL(import.meta.url).pathname);
const LIBSIGNAL_VERSION = (() => {
  const file = path.join(here, 'node_modules', '@signalapp', 'libsignal-client', 'package.json');
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')).version;
  } catch {
    return 'unknown';
  }
})();

function log(...parts) {
  process.stderr.write(`[libsignal-peer] ${parts.join(' ')}\n`);
}

// ---------------------------------------------------------------------------------------------
// errors and arguments

// The request is wrong (kind `internal`).
class BadRequest extends Error {}
// The input is refused although libsignal did not throw (kind `refused`).
class Refused extends Error {
  constructor(message, detail) {
    super(message);
    this.detail = detail;
  }
}

const B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

function bytes(args, key, { optional = false } = {}) {
  const value = args[key];
  if (value === undefined || value === null) {
    if (optional) return null;
    throw new BadRequest(`missing base64 argument '${key}'`);
  }
  if (typeof value !== 'string' || !B64.test(value)) throw new BadRequest(`'${key}' is not standard base64`);
  return Buffer.from(value, 'base64');
}

function int(args, key, { optional = false, min = 0, max = Number.MAX_SAFE_INTEGER } = {}) {
  const value = args[key];
  if (value === undefined || value === null) {
    if (optional) return null;
    throw new BadRequest(`missing integer argument '${key}'`);
  }
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new BadRequest(`'${key}' must be an integer in ${min}..${max}`);
  }
  return value;
}

function str(args, key) {
  const value = args[key];
  if (typeof value !== 'string' || value === '') throw new BadRequest(`missing string argument '${key}'`);
  return value;
}

function object(args, key) {
  const value = args[key];
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadRequest(`'${key}' must be an object`);
  }
  return value;
}

function list(args, key) {
  const value = args[key];
  if (!Array.isArray(value)) throw new BadRequest(`'${key}' must be a list`);
  return value;
}

function addressOf(value) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new BadRequest('an address is an object {name, device}');
  }
  return ProtocolAddress.new(str(value, 'name'), int(value, 'device', { min: 1, max: 127 }));
}

function address(args, key) {
  return addressOf(object(args, key));
}

function distributionId(args) {
  const value = str(args, 'distribution_id');
  if (!UUID.test(value)) throw new BadRequest("'distribution_id' must be a UUID string");
  return value.toLowerCase();
}

function now(args) {
  const ms = int(args, 'now_ms', { optional: true });
  return ms === null ? Date.now() : ms;
}

function randomRegistrationId() {
  return 1 + Math.floor(Math.random() * 16380);
}

// An error as the protocol's {kind, message, detail?}.
export function errorOf(err) {
  if (err instanceof BadRequest) return { kind: 'internal', message: `bad request: ${err.message}` };
  if (err instanceof Refused) return { kind: 'refused', message: err.message, detail: err.detail };
  if (err instanceof MissingRecord) return { kind: 'refused', message: err.message, detail: err.detail };
  if (err instanceof LibSignalErrorBase) {
    const message = `${err.name}: ${err.message}`;
    if (err.code === ErrorCode.UntrustedIdentity) return { kind: 'untrusted_identity', message };
    if (err.code === ErrorCode.IoError) return { kind: 'internal', message };
    const detail = {
      [ErrorCode.DuplicatedMessage]: 'duplicate',
      [ErrorCode.SealedSenderSelfSend]: 'self_send',
      [ErrorCode.InvalidSession]: 'no_session',
      [ErrorCode.InvalidSenderKeySession]: 'no_sender_key',
      [ErrorCode.VerificationFailed]: 'signature',
    }[err.code];
    return detail === undefined ? { kind: 'refused', message } : { kind: 'refused', message, detail };
  }
  const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return { kind: 'internal', message };
}

// ---------------------------------------------------------------------------------------------
// the peer

class Party {
  constructor(label, name, device, stores) {
    this.label = label;
    this.name = name;
    this.device = device;
    this.address = ProtocolAddress.new(name, device);
    this.stores = stores;
  }
}

export class Peer {
  constructor(stateFile) {
    this.stateFile = stateFile;
    this.parties = new Map(); // label -> Party
    this.issuers = new Map(); // label -> {trustRoot, serverKey, serverCertificate} (bytes)
  }

  party(args) {
    const label = str(args, 'party');
    const party = this.parties.get(label);
    if (party === undefined) throw new BadRequest(`unknown party '${label}'`);
    return party;
  }

  // -- storage ---------------------------------------------------------------------------------

  toJson() {
    const parties = {};
    for (const [label, p] of this.parties) parties[label] = { name: p.name, device: p.device, ...p.stores.toJson() };
    const issuers = {};
    for (const [label, i] of this.issuers) {
      issuers[label] = {
        trust_root: b64(i.trustRoot),
        server_key: b64(i.serverKey),
        server_certificate: b64(i.serverCertificate),
      };
    }
    return { format: 'securemsg-interop-libsignal-peer/1', parties, issuers };
  }

  save() {
    const tmp = `${this.stateFile}.tmp`;
    const fd = fs.openSync(tmp, 'w', 0o600);
    try {
      fs.writeSync(fd, JSON.stringify(this.toJson()));
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, this.stateFile);
  }

  load() {
    const state = JSON.parse(fs.readFileSync(this.stateFile, 'utf8'));
    if (state.format !== 'securemsg-interop-libsignal-peer/1') throw new Error(`${this.stateFile}: unknown format`);
    this.parties = new Map();
    for (const [label, p] of Object.entries(state.parties)) {
      this.parties.set(label, new Party(label, p.name, p.device, Stores.fromJson(p)));
    }
    this.issuers = new Map();
    for (const [label, i] of Object.entries(state.issuers)) {
      this.issuers.set(label, {
        trustRoot: Buffer.from(i.trust_root, 'base64'),
        serverKey: Buffer.from(i.server_key, 'base64'),
        serverCertificate: Buffer.from(i.server_certificate, 'base64'),
      });
    }
  }

  // -- 1:1 helpers -----------------------------------------------------------------------------

  async decryptOne(party, remote, type, body) {
    const s = party.stores;
    if (type === CiphertextMessageType.PreKey) {
      return SignalClient.signalDecryptPreKey(
        PreKeySignalMessage.deserialize(body),
        remote,
        party.address,
        s.session,
        s.identity,
        s.preKey,
        s.signedPreKey,
        s.kyberPreKey,
      );
    }
    if (type === CiphertextMessageType.Whisper) {
      return SignalClient.signalDecrypt(SignalMessage.deserialize(body), remote, party.address, s.session, s.identity);
    }
    throw new Refused(`message type ${type} is not a 1:1 message (2 Whisper, 3 PreKey)`, 'type');
  }

  async encryptOne(party, remote, plaintext, nowMs) {
    const s = party.stores;
    const message = await SignalClient.signalEncrypt(
      plaintext,
      remote,
      party.address,
      s.session,
      s.identity,
      new Date(nowMs),
    );
    return { type: message.type(), body: message.serialize() };
  }
}

// Every op: (peer, request) -> answer fields. Ops of this table are exactly the protocol's.
const OPS = {
  async hello() {
    return {
      protocol: PROTOCOL,
      implementation: { name: 'libsignal', version: LIBSIGNAL_VERSION },
      capabilities: CAPABILITIES,
    };
  },

  // --- identity and bundles ------------------------------------------------------------------
  async create_party(peer, args) {
    const label = str(args, 'party');
    if (peer.parties.has(label)) throw new BadRequest(`party '${label}' exists`);
    const name = str(args, 'name');
    const device = int(args, 'device', { min: 1, max: 127 });
    const registrationId = int(args, 'registration_id', { optional: true, max: 0x3fff }) ?? randomRegistrationId();
    const party = new Party(label, name, device, new Stores(PrivateKey.generate(), registrationId));
    peer.parties.set(label, party);
    return { identity_key: b64(party.stores.identity.privateKey.getPublicKey().serialize()), registration_id: registrationId };
  },

  async create_bundle(peer, args) {
    const party = peer.party(args);
    const s = party.stores;
    const identity = s.identity.privateKey;
    const timestamp = Date.now();
    const preKeyId = int(args, 'pre_key_id', { optional: true, max: 0xffffff });
    const signedId = int(args, 'signed_pre_key_id', { max: 0xffffff });
    const kyberId = int(args, 'kyber_pre_key_id', { max: 0xffffff });
    const bundle = { registration_id: s.identity.registrationId, device: party.device, pre_key_id: null, pre_key_public: null };
    if (preKeyId !== null) {
      const key = PrivateKey.generate();
      await s.preKey.savePreKey(preKeyId, PreKeyRecord.new(preKeyId, key.getPublicKey(), key));
      bundle.pre_key_id = preKeyId;
      bundle.pre_key_public = b64(key.getPublicKey().serialize());
    }
    const signedKey = PrivateKey.generate();
    const signedSig = identity.sign(signedKey.getPublicKey().serialize());
    await s.signedPreKey.saveSignedPreKey(
      signedId,
      SignedPreKeyRecord.new(signedId, timestamp, signedKey.getPublicKey(), signedKey, signedSig),
    );
    const kyber = KEMKeyPair.generate();
    const kyberSig = identity.sign(kyber.getPublicKey().serialize());
    await s.kyberPreKey.saveKyberPreKey(kyberId, KyberPreKeyRecord.new(kyberId, timestamp, kyber, kyberSig), false);
    return {
      ...bundle,
      signed_pre_key_id: signedId,
      signed_pre_key_public: b64(signedKey.getPublicKey().serialize()),
      signed_pre_key_signature: b64(signedSig),
      kyber_pre_key_id: kyberId,
      kyber_pre_key_public: b64(kyber.getPublicKey().serialize()),
      kyber_pre_key_signature: b64(kyberSig),
      identity_key: b64(identity.getPublicKey().serialize()),
    };
  },

  async process_bundle(peer, args) {
    const party = peer.party(args);
    const remote = address(args, 'remote');
    const b = object(args, 'bundle');
    const preKeyId = int(b, 'pre_key_id', { optional: true, max: 0xffffff });
    const preKeyPublic = bytes(b, 'pre_key_public', { optional: true });
    if ((preKeyId === null) !== (preKeyPublic === null)) {
      throw new BadRequest('a bundle has both pre_key_id and pre_key_public, or neither');
    }
    const bundle = PreKeyBundle.new(
      int(b, 'registration_id', { max: 0x3fff }),
      int(b, 'device', { min: 1, max: 127 }),
      preKeyId,
      preKeyPublic === null ? null : PublicKey.deserialize(preKeyPublic),
      int(b, 'signed_pre_key_id', { max: 0xffffff }),
      PublicKey.deserialize(bytes(b, 'signed_pre_key_public')),
      bytes(b, 'signed_pre_key_signature'),
      PublicKey.deserialize(bytes(b, 'identity_key')),
      int(b, 'kyber_pre_key_id', { max: 0xffffff }),
      KEMPublicKey.deserialize(bytes(b, 'kyber_pre_key_public')),
      bytes(b, 'kyber_pre_key_signature'),
    );
    const s = party.stores;
    await SignalClient.processPreKeyBundle(bundle, remote, party.address, s.session, s.identity, new Date(now(args)));
    return {};
  },

  // --- 1:1 messages ----------------------------------------------------------------------------
  async encrypt(peer, args) {
    const party = peer.party(args);
    const { type, body } = await peer.encryptOne(party, address(args, 'remote'), bytes(args, 'plaintext'), now(args));
    return { type, body: b64(body) };
  },

  async decrypt(peer, args) {
    const party = peer.party(args);
    const type = int(args, 'type', { max: 255 });
    const plaintext = await peer.decryptOne(party, address(args, 'remote'), type, bytes(args, 'body'));
    return { plaintext: b64(plaintext) };
  },

  async encrypt_many(peer, args) {
    const party = peer.party(args);
    const remote = address(args, 'remote');
    const plaintext = bytes(args, 'plaintext');
    const count = int(args, 'count', { max: MAX_ENCRYPT_MANY });
    const keepList = list(args, 'keep');
    if (!keepList.every((k) => Number.isSafeInteger(k))) throw new BadRequest("'keep' must be a list of integers");
    const keep = new Set(keepList);
    const nowMs = now(args);
    const messages = [];
    for (let index = 0; index < count; index++) {
      const { type, body } = await peer.encryptOne(party, remote, plaintext, nowMs);
      if (keep.has(index)) messages.push({ index, type, body: b64(body) });
    }
    return { messages };
  },

  // --- stored state ------------------------------------------------------------------------------
  async snapshot(peer, args) {
    const party = peer.party(args);
    const key = address(args, 'remote').toString();
    const session = party.stores.session.sessions.get(key) ?? Buffer.alloc(0);
    const trusted = party.stores.identity.identities.get(key) ?? Buffer.alloc(0);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(session.length);
    return { state: b64(Buffer.concat([length, session, trusted])) };
  },

  async has_session(peer, args) {
    const party = peer.party(args);
    const record = await party.stores.session.getSession(address(args, 'remote'));
    return { has_session: record !== null && record.hasCurrentState(new Date(now(args))) };
  },

  async archive_session(peer, args) {
    const party = peer.party(args);
    const remote = address(args, 'remote');
    const record = await party.stores.session.getSession(remote);
    if (record !== null) {
      record.archiveCurrentState();
      await party.stores.session.saveSession(remote, record);
    }
    return {};
  },

  async restart(peer) {
    peer.save();
    peer.parties = new Map();
    peer.issuers = new Map();
    peer.load();
    return {};
  },

  async reset_identity(peer, args) {
    const old = peer.party(args);
    const registrationId = int(args, 'registration_id', { optional: true, max: 0x3fff }) ?? randomRegistrationId();
    const party = new Party(old.label, old.name, old.device, new Stores(PrivateKey.generate(), registrationId));
    peer.parties.set(old.label, party);
    return { identity_key: b64(party.stores.identity.privateKey.getPublicKey().serialize()), registration_id: registrationId };
  },

  async trust(peer, args) {
    const party = peer.party(args);
    await party.stores.identity.saveIdentity(address(args, 'remote'), PublicKey.deserialize(bytes(args, 'identity_key')));
    return {};
  },

  // --- sealed sender -------------------------------------------------------------------------------
  async ss_create_issuer(peer, args) {
    const label = str(args, 'issuer');
    const keyId = int(args, 'key_id', { max: 0xffffffff });
    const trustRoot = PrivateKey.generate();
    const serverKey = PrivateKey.generate();
    const certificate = ServerCertificate.new(keyId, serverKey.getPublicKey(), trustRoot);
    peer.issuers.set(label, {
      trustRoot: Buffer.from(trustRoot.serialize()),
      serverKey: Buffer.from(serverKey.serialize()),
      serverCertificate: Buffer.from(certificate.serialize()),
    });
    return { trust_root: b64(trustRoot.getPublicKey().serialize()) };
  },

  async ss_issue_sender_certificate(peer, args) {
    const issuer = peer.issuers.get(str(args, 'issuer'));
    if (issuer === undefined) throw new BadRequest(`unknown issuer '${args.issuer}'`);
    const e164 = args.sender_e164;
    if (e164 !== undefined && e164 !== null && typeof e164 !== 'string') throw new BadRequest("'sender_e164' must be a string");
    const certificate = SenderCertificate.new(
      str(args, 'sender_uuid'),
      e164 ?? null,
      int(args, 'sender_device', { min: 1, max: 127 }),
      PublicKey.deserialize(bytes(args, 'identity_key')),
      int(args, 'expiration_ms'),
      ServerCertificate.deserialize(issuer.serverCertificate),
      PrivateKey.deserialize(issuer.serverKey),
    );
    return { certificate: b64(certificate.serialize()) };
  },

  async ss_encrypt(peer, args) {
    const party = peer.party(args);
    const body = await SignalClient.sealedSenderEncryptMessage(
      bytes(args, 'plaintext'),
      address(args, 'remote'),
      SenderCertificate.deserialize(bytes(args, 'sender_certificate')),
      party.stores.session,
      party.stores.identity,
    );
    return { body: b64(body) };
  },

  // Opens v1 and v2 received messages: unseal, check the certificate, refuse a self-send, then
  // decrypt the contents on the 1:1 session (2, 3) or as a sender-key message (7). Nothing is
  // stored before the inner decryption, which writes only when it succeeds.
  async ss_decrypt(peer, args) {
    const party = peer.party(args);
    const trustRoot = PublicKey.deserialize(bytes(args, 'trust_root'));
    const nowMs = now(args);
    const body = bytes(args, 'body');
    const usmc = await SignalClient.sealedSenderDecryptToUsmc(body, party.stores.identity);
    const certificate = usmc.senderCertificate();
    if (!certificate.validate(trustRoot, nowMs)) {
      throw new Refused('the sender certificate is not valid for this trust root at this time', 'certificate');
    }
    const sender = ProtocolAddress.new(certificate.senderUuid(), certificate.senderDeviceId());
    if (certificate.senderUuid() === party.name && certificate.senderDeviceId() === party.device) {
      throw new Refused('a sealed sender message from ourselves', 'self_send');
    }
    const type = usmc.msgType();
    let plaintext;
    if (type === CiphertextMessageType.SenderKey) {
      plaintext = await SignalClient.groupDecrypt(sender, party.stores.senderKey, usmc.contents());
    } else if (type === CiphertextMessageType.PreKey || type === CiphertextMessageType.Whisper) {
      plaintext = await peer.decryptOne(party, sender, type, usmc.contents());
    } else {
      throw new Refused(`sealed contents of type ${type} cannot be decrypted`, 'type');
    }
    return { sender: { name: certificate.senderUuid(), device: certificate.senderDeviceId() }, type, plaintext: b64(plaintext) };
  },

  async ss_multi_encrypt(peer, args) {
    const party = peer.party(args);
    const dist = distributionId(args);
    const recipients = list(args, 'recipients').map(addressOf);
    const certificate = SenderCertificate.deserialize(bytes(args, 'sender_certificate'));
    const groupId = bytes(args, 'group_id', { optional: true });
    const plaintext = bytes(args, 'plaintext');
    const s = party.stores;
    const message = await SignalClient.groupEncrypt(party.address, dist, s.senderKey, plaintext);
    const usmc = UnidentifiedSenderMessageContent.new(message, certificate, CONTENT_HINT_RESENDABLE, groupId);
    const body = await SignalClient.sealedSenderMultiRecipientEncrypt({
      content: usmc,
      recipients,
      excludedRecipients: [],
      identityStore: s.identity,
      sessionStore: s.session,
    });
    return { body: b64(body) };
  },

  // The server's part: one received message per recipient, in the sent message's order.
  async ss_multi_split(_peer, args) {
    const message = new SealedSenderMultiRecipientMessage(bytes(args, 'body'));
    return {
      recipients: Object.entries(message.recipientsByServiceIdString()).map(([serviceId, recipient]) => ({
        service_id: serviceId,
        devices: recipient.deviceIds,
        message: b64(message.messageForRecipient(recipient)),
      })),
    };
  },

  // --- sender-key groups ---------------------------------------------------------------------------
  async group_create(peer, args) {
    const party = peer.party(args);
    const skdm = await SenderKeyDistributionMessage.create(party.address, distributionId(args), party.stores.senderKey);
    return { skdm: b64(skdm.serialize()) };
  },

  async group_process(peer, args) {
    const party = peer.party(args);
    await SignalClient.processSenderKeyDistributionMessage(
      address(args, 'sender'),
      SenderKeyDistributionMessage.deserialize(bytes(args, 'skdm')),
      party.stores.senderKey,
    );
    return {};
  },

  async group_encrypt(peer, args) {
    const party = peer.party(args);
    const message = await SignalClient.groupEncrypt(party.address, distributionId(args), party.stores.senderKey, bytes(args, 'plaintext'));
    return { body: b64(message.serialize()) };
  },

  async group_decrypt(peer, args) {
    const party = peer.party(args);
    const plaintext = await SignalClient.groupDecrypt(address(args, 'sender'), party.stores.senderKey, bytes(args, 'body'));
    return { plaintext: b64(plaintext) };
  },

  // --- fingerprints --------------------------------------------------------------------------------
  async fingerprint(_peer, args) {
    const fp = Fingerprint.new(
      int(args, 'iterations', { min: 1, max: 1000000 }),
      int(args, 'version', { max: 0xffff }),
      bytes(args, 'local_id'),
      PublicKey.deserialize(bytes(args, 'local_key')),
      bytes(args, 'remote_id'),
      PublicKey.deserialize(bytes(args, 'remote_key')),
    );
    return { displayable: fp.displayableFingerprint().toString(), scannable: b64(fp.scannableFingerprint().toBuffer()) };
  },
};

// One request line -> one answer object (never throws).
export async function answer(peer, line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    return { id: null, ok: false, error: { kind: 'internal', message: `bad request: not JSON (${err.message})` } };
  }
  if (request === null || typeof request !== 'object' || Array.isArray(request)) {
    return { id: null, ok: false, error: { kind: 'internal', message: 'bad request: not a JSON object' } };
  }
  const id = request.id ?? null;
  const op = request.op;
  if (typeof op !== 'string' || !Object.hasOwn(OPS, op)) {
    return { id, ok: false, error: { kind: 'unsupported', message: `the libsignal peer has no op ${JSON.stringify(op)}` } };
  }
  try {
    return { id, ok: true, ...(await OPS[op](peer, request)) };
  } catch (err) {
    const error = errorOf(err);
    if (error.kind === 'internal' && !(err instanceof BadRequest)) log(`internal error in ${op}:`, err && err.stack);
    if (error.detail === undefined) delete error.detail;
    return { id, ok: false, error };
  }
}

function parseArgs(argv) {
  const options = { state: null, maxLine: DEFAULT_MAX_LINE };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--state' && i + 1 < argv.length) options.state = argv[++i];
    else if (arg === '--max-line-bytes' && i + 1 < argv.length) {
      options.maxLine = Number(argv[++i]);
      if (!Number.isSafeInteger(options.maxLine) || options.maxLine < 1) throw new Error('--max-line-bytes must be a positive integer');
    } else if (arg === '--help' || arg === '-h') {
      process.stdout.write('usage: node peer.mjs [--state FILE] [--max-line-bytes N]\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${JSON.stringify(arg)} (usage: node peer.mjs [--state FILE] [--max-line-bytes N])`);
  }
  return options;
}

async function main() {
  let options;
  try {
    options = parseArgs(process.argv.slice(2));
  } catch (err) {
    log(err.message);
    process.exit(2);
  }
  const level = SignalClient.LogLevel[process.env.PEER_LOG_LEVEL ?? 'Warn'] ?? SignalClient.LogLevel.Warn;
  SignalClient.initLogger(level, (lvl, target, _file, _line, message) => {
    log(`libsignal[${SignalClient.LogLevel[lvl]}] ${target}: ${message}`);
  });
  const dir = process.env.SECUREMSG_INTEROP_STATE_DIR || process.cwd();
  const peer = new Peer(path.resolve(options.state ?? path.join(dir, STATE_FILE)));
  if (options.state !== null && fs.existsSync(peer.stateFile)) {
    peer.load();
    log(`loaded ${peer.parties.size} parties from ${peer.stateFile}`);
  }
  log(`ready: ${PROTOCOL}, libsignal ${LIBSIGNAL_VERSION}, node ${process.version}`);
  for await (const line of readLines(process.stdin, options.maxLine)) {
    let reply;
    if (line instanceof TooLong) {
      reply = { id: null, ok: false, error: { kind: 'internal', message: `bad request: line of ${line.length} bytes, over ${options.maxLine}` } };
    } else if (line.trim() === '') continue;
    else reply = await answer(peer, line);
    process.stdout.write(`${JSON.stringify(reply)}\n`);
  }
  process.stdout.write('', () => process.exit(0));
}

main();
