// Linked devices: peer operations that let libsignal play one device of an account that has
// others (securemsg's or libsignal's), and fan out to every device of an account as a client
// does.
//
// Exports makeDeviceOps(ctx) -> an op table merged into OPS by peer.mjs, with peer.mjs's
// conventions (bytes as base64, parties by label, per-item batches never fail whole).
// Ops:
//   dev_add_device {party, account_party, device_id, registration_id?}
//       -> {identity_key, registration_id, address}
//       A new party for device `device_id` of the account `account_party` belongs to: same
//       name (ACI), same identity key pair, its own registration id and (empty) stores -- what
//       a linked device is after provisioning.
//   dev_fanout_encrypt {party, plaintext, recipients: [{name, device}], sender_certificate?}
//       -> {results: [{ok, name, device, type, body} | {ok: false, error}]}
//       Encrypts one plaintext for each listed device on its own session: identified
//       (signalEncrypt; type 2 or 3), or sealed sender v1 (sealedSenderEncryptMessage; type
//       null) when a sender certificate is given.
//   dev_receive_many {party, trust_root?, now_ms?, messages: [{body, type?, sender_name?,
//       sender_device?}]} -> {results: [{ok, plaintext, sender_name, sender_device} | error]}
//       Decrypts each message in order: with `type` 2/3 an identified message from
//       (sender_name, sender_device); without `type` a sealed sender v1 or v2 (received form)
//       message (sealedSenderDecryptMessage, our own address as the local one).
//   dev_session_devices {party, name} -> {device_ids}
//       The devices of `name` this party holds a current session with (ascending).
//   dev_archive_sessions {party, name, device_ids: [n]} -> {archived: [n]}
//       Archives the sessions with those devices of `name` (a device the account removed).

import * as SignalClient from '@signalapp/libsignal-client';

const { ProtocolAddress, PublicKey, SenderCertificate } = SignalClient;

export function makeDeviceOps(ctx) {
  const { b64, bytesArg, intArg, strArg, listArg, partyArg, perItem, Party, parties, BadRequest, decryptOne } = ctx;

  const deviceArg = (item, key) => {
    const device = intArg(item, key);
    if (device < 1 || device > 127) throw new BadRequest(`'${key}' must be a device id in 1..127`);
    return device;
  };

  return {
    async dev_add_device(args) {
      const label = strArg(args, 'party');
      if (parties.has(label)) throw new BadRequest(`party '${label}' already exists`);
      const account = partyArg({ party: strArg(args, 'account_party') });
      let registrationId = intArg(args, 'registration_id', { optional: true });
      if (registrationId === null) registrationId = 1 + Math.floor(Math.random() * 0x3ffe);
      const party = new Party(
        label,
        account.address.name(),
        deviceArg(args, 'device_id'),
        account.privateKey,
        registrationId,
      );
      parties.set(label, party);
      return {
        identity_key: b64(party.identityKey.serialize()),
        registration_id: registrationId,
        address: party.address.toString(),
      };
    },

    async dev_fanout_encrypt(args) {
      const party = partyArg(args);
      const plaintext = bytesArg(args, 'plaintext');
      const certBytes = bytesArg(args, 'sender_certificate', { optional: true });
      const cert = certBytes === null ? null : SenderCertificate.deserialize(certBytes);
      const results = await perItem(listArg(args, 'recipients'), async (r) => {
        const name = strArg(r, 'name');
        const device = deviceArg(r, 'device');
        const remote = ProtocolAddress.new(name, device);
        if (cert !== null) {
          const body = await SignalClient.sealedSenderEncryptMessage(
            plaintext,
            remote,
            cert,
            party.sessionStore,
            party.identityStore,
          );
          return { name, device, type: null, body: b64(body) };
        }
        const message = await SignalClient.signalEncrypt(
          plaintext,
          remote,
          party.address,
          party.sessionStore,
          party.identityStore,
        );
        return { name, device, type: message.type(), body: b64(message.serialize()) };
      });
      return { results };
    },

    async dev_receive_many(args) {
      const party = partyArg(args);
      const trustRoot = bytesArg(args, 'trust_root', { optional: true });
      const nowMs = intArg(args, 'now_ms', { optional: true, fallback: Date.now() });
      const results = await perItem(listArg(args, 'messages'), async (m) => {
        const body = bytesArg(m, 'body');
        const type = intArg(m, 'type', { optional: true });
        if (type !== null) {
          const name = strArg(m, 'sender_name');
          const device = deviceArg(m, 'sender_device');
          const { plaintext } = await decryptOne(party, ProtocolAddress.new(name, device), type, body);
          return { plaintext, sender_name: name, sender_device: device };
        }
        if (trustRoot === null) throw new BadRequest("a sealed message needs 'trust_root'");
        const result = await SignalClient.sealedSenderDecryptMessage(
          body,
          PublicKey.deserialize(trustRoot),
          nowMs,
          null,
          party.address.name(),
          party.address.deviceId(),
          party.sessionStore,
          party.identityStore,
          party.preKeyStore,
          party.signedPreKeyStore,
          party.kyberPreKeyStore,
        );
        return {
          plaintext: b64(result.message()),
          sender_name: result.senderUuid(),
          sender_device: result.deviceId(),
        };
      });
      return { results };
    },

    async dev_session_devices(args) {
      const party = partyArg(args);
      const name = strArg(args, 'name');
      const deviceIds = [];
      for (let device = 1; device <= 127; device++) {
        const record = await party.sessionStore.getSession(ProtocolAddress.new(name, device));
        if (record !== null && record.hasCurrentState(new Date())) deviceIds.push(device);
      }
      return { device_ids: deviceIds };
    },

    async dev_archive_sessions(args) {
      const party = partyArg(args);
      const name = strArg(args, 'name');
      const archived = [];
      for (const item of listArg(args, 'device_ids')) {
        const device = deviceArg({ device: item }, 'device');
        const remote = ProtocolAddress.new(name, device);
        const record = await party.sessionStore.getSession(remote);
        if (record === null || !record.hasCurrentState(new Date())) continue;
        record.archiveCurrentState();
        await party.sessionStore.saveSession(remote, record);
        archived.push(device);
      }
      return { archived };
    },
  };
}
