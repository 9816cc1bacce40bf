// Test-only oracle for securemsg's provisioning cipher: Signal's own @signalapp/mock-server
// (pinned in package.json) encrypts and parses provisioning messages.
//
// Newline-delimited JSON on stdin/stdout, answered in order (like ../peer/peer.mjs):
//   request  {"id": 1, "op": "encrypt", ...}
//   success  {"id": 1, "ok": true, "result": {...}}
//   failure  {"id": 1, "ok": false, "error": {"type": "...", "message": "..."}}
// Bytes are standard base64.
//
// Ops:
//   ping                                  -> {mock_server_version, libsignal_version}
//   encrypt {data, public_key}            -> mock-server's encryptProvisionMessage(data, key):
//                                            {body, ephemeral_key, envelope}, where envelope is
//                                            Proto.ProvisionEnvelope.encode({publicKey, body})
//                                            as mock-server's server does it
//   encode_message {fields}               -> {message}: Proto.ProvisionMessage.encode(fields);
//                                            bytes fields as base64, strings, bools, numbers
//   decode_message {message}              -> {fields, unknown}: Proto.ProvisionMessage.decode;
//                                            unknown = how many fields it does not know
//   decode_envelope {envelope}            -> {public_key, body, unknown}
//   decrypt {envelope, private_key}       -> {message}. mock-server exports no decrypt, so this
//                                            one is written here after Signal-Desktop's
//                                            ts/textsecure/ProvisioningCipher.ts, on libsignal's
//                                            agree and hkdf and Node's crypto: an independent
//                                            second implementation, not the oracle itself.

import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import readline from 'node:readline';

import { PrivateKey, PublicKey, hkdf } from '@signalapp/libsignal-client';
import { Proto } from '@signalapp/mock-server';

const require = createRequire(import.meta.url);
// Not re-exported by the package index; the package has no "exports" map, so the module path
// is part of its published layout (src/crypto.js).
const { encryptProvisionMessage } = require('@signalapp/mock-server/src/crypto.js');
const mockServerVersion = require('@signalapp/mock-server/package.json').version;
const libsignalVersion = require('@signalapp/libsignal-client/package.json').version;

const B64 = (bytes) => Buffer.from(bytes).toString('base64');
const UNB64 = (text) => {
  if (typeof text !== 'string') throw new BadRequest('expected a base64 string');
  return Buffer.from(text, 'base64');
};

class BadRequest extends Error {
  constructor(message) {
    super(message);
    this.name = 'BadRequest';
  }
}

const BYTES_FIELDS = new Set([
  'aciIdentityKeyPublic',
  'aciIdentityKeyPrivate',
  'pniIdentityKeyPublic',
  'pniIdentityKeyPrivate',
  'profileKey',
  'masterKey',
  'ephemeralBackupKey',
  'mediaRootBackupKey',
  'aciBinary',
  'pniBinary',
  'authCredentialSalt',
]);

function fieldsToJson(decoded) {
  const out = {};
  for (const [name, value] of Object.entries(decoded)) {
    if (name === '$unknown' || value === null || value === undefined) continue;
    out[name] = value instanceof Uint8Array ? B64(value) : value;
  }
  return out;
}

function jsonToFields(fields) {
  if (fields === null || typeof fields !== 'object') throw new BadRequest('fields: object');
  const params = {};
  for (const [name, value] of Object.entries(fields)) {
    params[name] = BYTES_FIELDS.has(name) && value !== null ? UNB64(value) : value;
  }
  return params;
}

function decryptLikeDesktop(envelopeBytes, privateKeyBytes) {
  const envelope = Proto.ProvisionEnvelope.decode(envelopeBytes);
  if (!envelope.publicKey || !envelope.body) throw new Error('missing field');
  const message = Buffer.from(envelope.body);
  if (message[0] !== 1) throw new Error('Bad version number on ProvisioningMessage');
  const iv = message.subarray(1, 17);
  const mac = message.subarray(message.length - 32);
  const signed = message.subarray(0, message.length - 32);
  const ciphertext = message.subarray(17, message.length - 32);
  const ours = PrivateKey.deserialize(privateKeyBytes);
  const shared = ours.agree(PublicKey.deserialize(envelope.publicKey));
  const keys = hkdf(64, shared, Buffer.from('TextSecure Provisioning Message'), Buffer.alloc(32));
  const expected = crypto.createHmac('sha256', keys.subarray(32, 64)).update(signed).digest();
  if (!crypto.timingSafeEqual(expected, mac)) throw new Error('Bad MAC');
  const decipher = crypto.createDecipheriv('aes-256-cbc', keys.subarray(0, 32), iv);
  return Buffer.concat([decipher.update(ciphertext), decipher.final()]);
}

const OPS = {
  ping() {
    return { mock_server_version: mockServerVersion, libsignal_version: libsignalVersion };
  },
  encrypt({ data, public_key }) {
    const key = PublicKey.deserialize(UNB64(public_key));
    const { body, ephemeralKey } = encryptProvisionMessage(UNB64(data), key);
    const envelope = Proto.ProvisionEnvelope.encode({ publicKey: ephemeralKey, body });
    return { body: B64(body), ephemeral_key: B64(ephemeralKey), envelope: B64(envelope) };
  },
  encode_message({ fields }) {
    return { message: B64(Proto.ProvisionMessage.encode(jsonToFields(fields))) };
  },
  decode_message({ message }) {
    const decoded = Proto.ProvisionMessage.decode(UNB64(message));
    return { fields: fieldsToJson(decoded), unknown: decoded.$unknown.length };
  },
  decode_envelope({ envelope }) {
    const decoded = Proto.ProvisionEnvelope.decode(UNB64(envelope));
    return {
      public_key: decoded.publicKey ? B64(decoded.publicKey) : null,
      body: decoded.body ? B64(decoded.body) : null,
      unknown: decoded.$unknown.length,
    };
  },
  decrypt({ envelope, private_key }) {
    return { message: B64(decryptLikeDesktop(UNB64(envelope), UNB64(private_key))) };
  },
};

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line.trim()) continue;
  let id = null;
  let response;
  try {
    const request = JSON.parse(line);
    id = request.id ?? null;
    const op = OPS[request.op];
    if (!op) throw new BadRequest(`unknown op ${request.op}`);
    response = { id, ok: true, result: op(request) };
  } catch (error) {
    response = {
      id,
      ok: false,
      error: { type: error?.name ?? 'Error', message: String(error?.message ?? error) },
    };
  }
  process.stdout.write(JSON.stringify(response) + '\n');
}
