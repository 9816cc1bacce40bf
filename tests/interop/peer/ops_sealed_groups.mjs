// Sealed sender (v1, v2), sender-key groups and safety numbers: peer operations.
//
// Exports makeSealedGroupOps(ctx) -> an op table merged into OPS by peer.mjs. `ctx` carries
// peer.mjs's helpers (argument parsing, parties, base64), so the conventions are the same:
// bytes travel as base64, parties are addressed by label, per-item batches never fail whole.
// Arguments of every op are documented next to it.

import * as SignalClient from '@signalapp/libsignal-client';
import SealedSenderMultiRecipientMessage from '@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js';

const {
  CiphertextMessage,
  Fingerprint,
  PlaintextContent,
  PrivateKey,
  ProtocolAddress,
  PublicKey,
  ScannableFingerprint,
  SenderCertificate,
  SenderKeyDistributionMessage,
  ServerCertificate,
  ServiceId,
  UnidentifiedSenderMessageContent,
} = SignalClient;

export function makeSealedGroupOps(ctx) {
  const { b64, bytesArg, intArg, strArg, listArg, partyArg, remoteArg, perItem, BadRequest } = ctx;

  const usmcFacts = (usmc) => ({
    usmc: b64(usmc.serialize()),
    msg_type: usmc.msgType(),
    contents: b64(usmc.contents()),
    sender_certificate: b64(usmc.senderCertificate().serialize()),
    sender_uuid: usmc.senderCertificate().senderUuid(),
    sender_device: usmc.senderCertificate().senderDeviceId(),
    content_hint: usmc.contentHint(),
    group_id: usmc.groupId() === null ? null : b64(usmc.groupId()),
  });

  const optionalBytes = (args, key) => bytesArg(args, key, { optional: true });

  return {
    // --- certificates ---------------------------------------------------------------------
    // {key_id, server_public, trust_root_private} -> {certificate}
    async ss_server_certificate(args) {
      const cert = ServerCertificate.new(
        intArg(args, 'key_id'),
        PublicKey.deserialize(bytesArg(args, 'server_public')),
        PrivateKey.deserialize(bytesArg(args, 'trust_root_private')),
      );
      return { certificate: b64(cert.serialize()) };
    },
    // {sender_uuid, sender_e164|null, device_id, identity_key, expiration_ms,
    //  server_certificate, server_private} -> {certificate}
    async ss_sender_certificate(args) {
      const cert = SenderCertificate.new(
        strArg(args, 'sender_uuid'),
        typeof args.sender_e164 === 'string' ? args.sender_e164 : null,
        intArg(args, 'device_id'),
        PublicKey.deserialize(bytesArg(args, 'identity_key')),
        intArg(args, 'expiration_ms'),
        ServerCertificate.deserialize(bytesArg(args, 'server_certificate')),
        PrivateKey.deserialize(bytesArg(args, 'server_private')),
      );
      return { certificate: b64(cert.serialize()) };
    },
    // {certificate, trust_roots: [b64], now_ms} -> {valid, sender_uuid, device_id, expiration}
    async ss_validate_sender_certificate(args) {
      const cert = SenderCertificate.deserialize(bytesArg(args, 'certificate'));
      const roots = listArg(args, 'trust_roots').map((r) => PublicKey.deserialize(Buffer.from(r, 'base64')));
      return {
        valid: cert.validateWithTrustRoots(roots, intArg(args, 'now_ms')),
        sender_uuid: cert.senderUuid(),
        sender_e164: cert.senderE164(),
        device_id: cert.senderDeviceId(),
        expiration: cert.expiration(),
        key: b64(cert.key().serialize()),
      };
    },

    // --- sealed sender v1 -----------------------------------------------------------------
    // 1:1 encrypt + seal. {party, remote_name, remote_device, plaintext, sender_certificate}
    async ss_encrypt(args) {
      const party = partyArg(args);
      const body = await SignalClient.sealedSenderEncryptMessage(
        bytesArg(args, 'plaintext'),
        remoteArg(args),
        SenderCertificate.deserialize(bytesArg(args, 'sender_certificate')),
        party.sessionStore,
        party.identityStore,
      );
      return { body: b64(body) };
    },
    // Seal a USMC given as bytes. {party, remote_name, remote_device, usmc}
    async ss_seal_usmc(args) {
      const party = partyArg(args);
      const usmc = UnidentifiedSenderMessageContent.deserialize(bytesArg(args, 'usmc'));
      const body = await SignalClient.sealedSenderEncrypt(usmc, remoteArg(args), party.identityStore);
      return { body: b64(body) };
    },
    // Build a USMC around a plaintext-content message. {contents, sender_certificate,
    // content_hint, group_id|null} -> {usmc}
    async ss_usmc_plaintext(args) {
      const message = CiphertextMessage.from(PlaintextContent.deserialize(bytesArg(args, 'contents')));
      const usmc = UnidentifiedSenderMessageContent.new(
        message,
        SenderCertificate.deserialize(bytesArg(args, 'sender_certificate')),
        intArg(args, 'content_hint', { optional: true, fallback: 0 }),
        optionalBytes(args, 'group_id'),
      );
      return { usmc: b64(usmc.serialize()) };
    },
    // {party, body, trust_root, now_ms, local_e164?} -> {sender_uuid, sender_e164, device_id, plaintext}
    async ss_decrypt(args) {
      const party = partyArg(args);
      const result = await SignalClient.sealedSenderDecryptMessage(
        bytesArg(args, 'body'),
        PublicKey.deserialize(bytesArg(args, 'trust_root')),
        intArg(args, 'now_ms'),
        typeof args.local_e164 === 'string' ? args.local_e164 : null,
        party.address.name(),
        party.address.deviceId(),
        party.sessionStore,
        party.identityStore,
        party.preKeyStore,
        party.signedPreKeyStore,
        party.kyberPreKeyStore,
      );
      return {
        sender_uuid: result.senderUuid(),
        sender_e164: result.senderE164(),
        device_id: result.deviceId(),
        plaintext: b64(result.message()),
      };
    },
    // {party, body} -> usmc facts
    async ss_decrypt_to_usmc(args) {
      const party = partyArg(args);
      const usmc = await SignalClient.sealedSenderDecryptToUsmc(bytesArg(args, 'body'), party.identityStore);
      return usmcFacts(usmc);
    },
    // Batch of the above. {party, bodies: [b64]} -> {results: [usmc facts | error]}
    async ss_decrypt_to_usmc_many(args) {
      const party = partyArg(args);
      const bodies = listArg(args, 'bodies').map((b) => ({ body: b }));
      return {
        results: await perItem(bodies, async (item) =>
          usmcFacts(await SignalClient.sealedSenderDecryptToUsmc(bytesArg(item, 'body'), party.identityStore)),
        ),
      };
    },

    // --- sealed sender v2 -----------------------------------------------------------------
    // {party, usmc, recipients: [{name, device}], excluded: [service id strings]} -> {body}
    async ss_multi_encrypt(args) {
      const party = partyArg(args);
      const recipients = listArg(args, 'recipients').map((r) => ProtocolAddress.new(strArg(r, 'name'), intArg(r, 'device')));
      const excluded = (args.excluded ?? []).map((s) => ServiceId.parseFromServiceIdString(s));
      const body = await SignalClient.sealedSenderMultiRecipientEncrypt({
        content: UnidentifiedSenderMessageContent.deserialize(bytesArg(args, 'usmc')),
        recipients,
        excludedRecipients: excluded,
        identityStore: party.identityStore,
        sessionStore: party.sessionStore,
      });
      return { body: b64(body) };
    },
    // libsignal's server-side split. {body} -> {recipients: {sid: {device_ids, registration_ids,
    // message}}, excluded: [sid]}
    async ss_multi_split(args) {
      const message = new SealedSenderMultiRecipientMessage(bytesArg(args, 'body'));
      const out = {};
      for (const [sid, recipient] of Object.entries(message.recipientsByServiceIdString())) {
        out[sid] = {
          device_ids: recipient.deviceIds,
          registration_ids: recipient.registrationIds,
          message: b64(message.messageForRecipient(recipient)),
        };
      }
      return { recipients: out, excluded: [...message.excludedRecipientServiceIdStrings()] };
    },
    // {body} -> {message} (sent message with exactly one recipient)
    async ss_single_recipient(args) {
      return { message: b64(SignalClient.sealedSenderMultiRecipientMessageForSingleRecipient(bytesArg(args, 'body'))) };
    },

    // --- sender keys ----------------------------------------------------------------------
    // {party, distribution_id} -> {skdm}
    async skdm_create(args) {
      const party = partyArg(args);
      const skdm = await SenderKeyDistributionMessage.create(party.address, strArg(args, 'distribution_id'), party.senderKeyStore);
      return { skdm: b64(skdm.serialize()) };
    },
    // {party, sender_name, sender_device, skdm}
    async skdm_process(args) {
      const party = partyArg(args);
      await SignalClient.processSenderKeyDistributionMessage(
        ProtocolAddress.new(strArg(args, 'sender_name'), intArg(args, 'sender_device')),
        SenderKeyDistributionMessage.deserialize(bytesArg(args, 'skdm')),
        party.senderKeyStore,
      );
      return {};
    },
    // {party, distribution_id, plaintexts: [b64], sender_certificate?, group_id?}
    //   -> {bodies: [b64], usmcs?: [b64]} (usmcs wrap each message when a certificate is given)
    async group_encrypt_many(args) {
      const party = partyArg(args);
      const distributionId = strArg(args, 'distribution_id');
      const cert = optionalBytes(args, 'sender_certificate');
      const senderCert = cert === null ? null : SenderCertificate.deserialize(cert);
      const groupId = optionalBytes(args, 'group_id');
      const bodies = [];
      const usmcs = [];
      for (const p of listArg(args, 'plaintexts')) {
        const message = await SignalClient.groupEncrypt(party.address, distributionId, party.senderKeyStore, Buffer.from(p, 'base64'));
        bodies.push(b64(message.serialize()));
        if (senderCert !== null) {
          usmcs.push(b64(UnidentifiedSenderMessageContent.new(message, senderCert, 1, groupId).serialize()));
        }
      }
      return senderCert === null ? { bodies } : { bodies, usmcs };
    },
    // {party, sender_name, sender_device, bodies: [b64]} -> {results: [{plaintext} | error]}
    async group_decrypt_many(args) {
      const party = partyArg(args);
      const sender = ProtocolAddress.new(strArg(args, 'sender_name'), intArg(args, 'sender_device'));
      const items = listArg(args, 'bodies').map((b) => ({ body: b }));
      return {
        results: await perItem(items, async (item) => ({
          plaintext: b64(await SignalClient.groupDecrypt(sender, party.senderKeyStore, bytesArg(item, 'body'))),
        })),
      };
    },

    // --- safety numbers -------------------------------------------------------------------
    // {items: [{iterations, version, local_id, local_key, remote_id, remote_key}]}
    //   -> {results: [{displayable, scannable}]}
    async fingerprints(args) {
      return {
        results: await perItem(listArg(args, 'items'), async (item) => {
          const fp = Fingerprint.new(
            intArg(item, 'iterations'),
            intArg(item, 'version'),
            bytesArg(item, 'local_id'),
            PublicKey.deserialize(bytesArg(item, 'local_key')),
            bytesArg(item, 'remote_id'),
            PublicKey.deserialize(bytesArg(item, 'remote_key')),
          );
          return {
            displayable: fp.displayableFingerprint().toString(),
            scannable: b64(fp.scannableFingerprint().toBuffer()),
          };
        }),
      };
    },
    // {ours, theirs} -> {equal}; libsignal throws on a version mismatch
    async fingerprint_compare(args) {
      const ours = ScannableFingerprint._fromBuffer(bytesArg(args, 'ours'));
      const theirs = ScannableFingerprint._fromBuffer(bytesArg(args, 'theirs'));
      if (!(ours instanceof ScannableFingerprint)) throw new BadRequest('bad fingerprint');
      return { equal: ours.compare(theirs) };
    },
  };
}
