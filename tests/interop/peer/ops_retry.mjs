// Retry requests (DecryptionErrorMessage inside PlaintextContent): peer operations.
//
// Exports makeRetryOps(ctx) -> an op table merged into OPS by peer.mjs, with peer.mjs's
// conventions (bytes as base64). Ops:
//   dem_for_original            original, type, timestamp, device_id
//                               -> DEM facts + plaintext_content (serialized) + body
//   dem_parse                   dem -> DEM facts (DecryptionErrorMessage.deserialize)
//   dem_from_plaintext_content  plaintext_content -> DEM facts + body
//                               (PlaintextContent.deserialize, extractFromSerializedBody)
// DEM facts: {dem (serialized), timestamp, device_id, ratchet_key (33 B) | null}.

import * as SignalClient from '@signalapp/libsignal-client';

const { DecryptionErrorMessage, PlaintextContent } = SignalClient;

export function makeRetryOps(ctx) {
  const { b64, bytesArg, intArg } = ctx;

  const facts = (dem) => {
    const key = dem.ratchetKey();
    return {
      dem: b64(dem.serialize()),
      timestamp: dem.timestamp(),
      device_id: dem.deviceId(),
      ratchet_key: key === undefined || key === null ? null : b64(key.serialize()),
    };
  };

  return {
    async dem_for_original(args) {
      const dem = DecryptionErrorMessage.forOriginal(
        bytesArg(args, 'original'),
        intArg(args, 'type'),
        intArg(args, 'timestamp'),
        intArg(args, 'device_id'),
      );
      const content = PlaintextContent.from(dem);
      return { ...facts(dem), plaintext_content: b64(content.serialize()), body: b64(content.body()) };
    },
    async dem_parse(args) {
      return facts(DecryptionErrorMessage.deserialize(bytesArg(args, 'dem')));
    },
    async dem_from_plaintext_content(args) {
      const content = PlaintextContent.deserialize(bytesArg(args, 'plaintext_content'));
      const dem = DecryptionErrorMessage.extractFromSerializedBody(content.body());
      return { ...facts(dem), body: b64(content.body()) };
    },
  };
}
