// Raw-key import and KEM secret checks: peer operations for the known-answer vectors.
//
// Exports makeVectorOps(ctx) -> an op table merged into OPS by peer.mjs (same conventions:
// bytes as base64, parties by label, BadRequest for malformed arguments).
//
//   import_raw_keys  party, pre_keys?: [{id, public, private}],
//                    signed_pre_keys?: [{id, timestamp, public, private, signature}],
//                    kyber_pre_keys?: [{id, timestamp, public, secret, signature}],
//                    kyber_last_resort?
//                    -> ids imported. Builds libsignal records from raw keys (as another
//                    implementation would hand them over) and stores them in the party.
//   kem_check_secret secret -> {secret}: KEMSecretKey.deserialize(secret).serialize().
//
// libsignal's JS API has no KEMKeyPair constructor from existing keys, so a Kyber prekey record
// is assembled as the protobuf libsignal stores (storage.proto SignedPreKeyRecordStructure:
// id = 1 varint, public_key = 2, private_key = 3, signature = 4, timestamp = 5 fixed64) and
// parsed with KyberPreKeyRecord.deserialize; its keys are then read back through libsignal.

import * as SignalClient from '@signalapp/libsignal-client';

const { KEMPublicKey, KEMSecretKey, KyberPreKeyRecord, PreKeyRecord, PrivateKey, PublicKey, SignedPreKeyRecord } =
  SignalClient;

function varint(value) {
  const out = [];
  let v = BigInt(value);
  do {
    let byte = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) byte |= 0x80;
    out.push(byte);
  } while (v > 0n);
  return Buffer.from(out);
}

function bytesField(field, bytes) {
  return Buffer.concat([varint(field * 8 + 2), varint(bytes.length), bytes]);
}

function fixed64Field(field, value) {
  const buf = Buffer.alloc(8);
  buf.writeBigUInt64LE(BigInt(value));
  return Buffer.concat([varint(field * 8 + 1), buf]);
}

export function makeVectorOps(ctx) {
  const { b64, bytesArg, intArg, partyArg, BadRequest } = ctx;

  const items = (args, key) => {
    const value = args[key] ?? [];
    if (!Array.isArray(value)) throw new BadRequest(`'${key}' must be a list`);
    return value;
  };

  return {
    async import_raw_keys(args) {
      const party = partyArg(args);
      const imported = { pre_keys: [], signed_pre_keys: [], kyber_pre_keys: [] };
      for (const item of items(args, 'pre_keys')) {
        const id = intArg(item, 'id');
        const record = PreKeyRecord.new(
          id,
          PublicKey.deserialize(bytesArg(item, 'public')),
          PrivateKey.deserialize(bytesArg(item, 'private')),
        );
        await party.preKeyStore.savePreKey(id, record);
        imported.pre_keys.push(record.id());
      }
      for (const item of items(args, 'signed_pre_keys')) {
        const id = intArg(item, 'id');
        const record = SignedPreKeyRecord.new(
          id,
          intArg(item, 'timestamp'),
          PublicKey.deserialize(bytesArg(item, 'public')),
          PrivateKey.deserialize(bytesArg(item, 'private')),
          bytesArg(item, 'signature'),
        );
        await party.signedPreKeyStore.saveSignedPreKey(id, record);
        imported.signed_pre_keys.push(record.id());
      }
      for (const item of items(args, 'kyber_pre_keys')) {
        const id = intArg(item, 'id');
        // Parse both keys first, so libsignal has validated them before they enter a record.
        const pub = KEMPublicKey.deserialize(bytesArg(item, 'public')).serialize();
        const secret = KEMSecretKey.deserialize(bytesArg(item, 'secret')).serialize();
        const bytes = Buffer.concat([
          varint(1 * 8 + 0),
          varint(id),
          bytesField(2, Buffer.from(pub)),
          bytesField(3, Buffer.from(secret)),
          bytesField(4, bytesArg(item, 'signature')),
          fixed64Field(5, intArg(item, 'timestamp')),
        ]);
        const record = KyberPreKeyRecord.deserialize(bytes);
        record.keyPair(); // libsignal rebuilds the pair from the stored halves
        await party.kyberPreKeyStore.saveKyberPreKey(id, record, args.kyber_last_resort === true);
        imported.kyber_pre_keys.push(record.id());
      }
      return imported;
    },
    async kem_check_secret(args) {
      return { secret: b64(KEMSecretKey.deserialize(bytesArg(args, 'secret')).serialize()) };
    },
  };
}
