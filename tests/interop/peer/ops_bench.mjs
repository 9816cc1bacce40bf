// Benchmark ops for the libsignal peer: each op runs one scenario `iterations` times INSIDE Node
// (after `warmup` untimed runs) and returns the timings, so the JSON pipe is not measured.
//
// Every iteration is timed with process.hrtime.bigint() around the scenario's libsignal calls only
// (fixture generation, such as a fresh bundle for session setup, happens outside the timed span).
// Parties here are private to the op (not in the peer's `parties` map) and use the peer's
// in-memory stores, which hold serialized records as libsignal's own tests do.
//
// Result of every op: { median_us, q1_us, q3_us, mean_us, min_us, iterations, ...extra }.
// benchmarks/compare.py is the client; tests/interop/README.md lists the ops.

import { randomUUID } from 'node:crypto';

export function benchOps({ SignalClient, Party, BadRequest }) {
  const {
    CiphertextMessageType,
    Fingerprint,
    KEMKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    PreKeySignalMessage,
    PrivateKey,
    SenderCertificate,
    SenderKeyDistributionMessage,
    ServerCertificate,
    SignalMessage,
    SignedPreKeyRecord,
    UnidentifiedSenderMessageContent,
  } = SignalClient;

  const count = (args, key, fallback, max) => {
    const v = args[key] ?? fallback;
    if (!Number.isSafeInteger(v) || v < 0 || v > max) throw new BadRequest(`'${key}' must be in 0..${max}`);
    return v;
  };

  function stats(samples, extra = {}) {
    const s = [...samples].sort((a, b) => a - b);
    const q = (p) => {
      const pos = (s.length - 1) * p;
      const lo = Math.floor(pos);
      const hi = Math.ceil(pos);
      return s[lo] + (s[hi] - s[lo]) * (pos - lo);
    };
    const mean = s.reduce((a, b) => a + b, 0) / s.length;
    return { median_us: q(0.5), q1_us: q(0.25), q3_us: q(0.75), mean_us: mean, min_us: s[0], iterations: s.length, ...extra };
  }

  // Runs `body(i)` (async) warmup + iterations times; `prepare(i)` runs untimed before each.
  async function timeLoop(args, body, { prepare = null, defaultIterations = 1000, max = 1000000 } = {}) {
    const iterations = count(args, 'iterations', defaultIterations, max);
    const warmup = count(args, 'warmup', Math.min(50, iterations), max);
    const samples = [];
    for (let i = 0; i < warmup + iterations; i++) {
      const ctx = prepare === null ? null : await prepare(i);
      const t0 = process.hrtime.bigint();
      await body(ctx, i);
      const t1 = process.hrtime.bigint();
      if (i >= warmup) samples.push(Number(t1 - t0) / 1000);
    }
    if (samples.length === 0) throw new BadRequest("'iterations' must be at least 1");
    return stats(samples);
  }

  function newParty(deviceId = 1) {
    const name = randomUUID();
    return new Party(`bench-${name}`, name, deviceId, PrivateKey.generate(), 1 + Math.floor(Math.random() * 0x3ffe));
  }

  let nextId = 1;
  async function publishBundle(party) {
    const id = nextId++;
    const now = Date.now();
    const pre = PrivateKey.generate();
    await party.preKeyStore.savePreKey(id, PreKeyRecord.new(id, pre.getPublicKey(), pre));
    const spk = PrivateKey.generate();
    const spkSig = party.privateKey.sign(spk.getPublicKey().serialize());
    await party.signedPreKeyStore.saveSignedPreKey(
      id,
      SignedPreKeyRecord.new(id, now, spk.getPublicKey(), spk, spkSig),
    );
    const kyber = KEMKeyPair.generate();
    const kyberSig = party.privateKey.sign(kyber.getPublicKey().serialize());
    await party.kyberPreKeyStore.saveKyberPreKey(id, KyberPreKeyRecord.new(id, now, kyber, kyberSig), false);
    return PreKeyBundle.new(
      party.registrationId,
      party.address.deviceId(),
      id,
      pre.getPublicKey(),
      id,
      spk.getPublicKey(),
      spkSig,
      party.identityKey,
      id,
      kyber.getPublicKey(),
      kyberSig,
    );
  }

  const encrypt = (from, to, plaintext) =>
    SignalClient.signalEncrypt(plaintext, to.address, from.address, from.sessionStore, from.identityStore);

  async function decrypt(to, from, type, body) {
    if (type === CiphertextMessageType.PreKey) {
      return SignalClient.signalDecryptPreKey(
        PreKeySignalMessage.deserialize(body),
        from.address,
        to.address,
        to.sessionStore,
        to.identityStore,
        to.preKeyStore,
        to.signedPreKeyStore,
        to.kyberPreKeyStore,
      );
    }
    return SignalClient.signalDecrypt(
      SignalMessage.deserialize(body),
      from.address,
      to.address,
      to.sessionStore,
      to.identityStore,
    );
  }

  // One RT as the Python side does it: encrypt, serialize, deserialize, decrypt.
  async function roundTrip(from, to, plaintext) {
    const message = await encrypt(from, to, plaintext);
    const out = await decrypt(to, from, message.type(), message.serialize());
    if (out.length !== plaintext.length) throw new Error('bench: round trip lost bytes');
  }

  // PQXDH + the first message each way: both parties then send Whisper messages.
  async function establishedPair() {
    const alice = newParty();
    const bob = newParty();
    await SignalClient.processPreKeyBundle(
      await publishBundle(bob),
      bob.address,
      alice.address,
      alice.sessionStore,
      alice.identityStore,
    );
    await roundTrip(alice, bob, Buffer.from('hi bob'));
    await roundTrip(bob, alice, Buffer.from('hi alice'));
    return [alice, bob];
  }

  function senderCertificate(party, trustRoot) {
    const server = PrivateKey.generate();
    const serverCert = ServerCertificate.new(1, server.getPublicKey(), trustRoot);
    return SenderCertificate.new(
      party.address.name(),
      null,
      party.address.deviceId(),
      party.identityKey,
      Date.now() + 86400000,
      serverCert,
      server,
    );
  }

  return {
    // 1:1 RT on an established session (same chain every time: no DH step). `size` bytes.
    async bench_session_round_trip(args) {
      const size = count(args, 'size', 100, 16 << 20);
      const [alice, bob] = await establishedPair();
      const plaintext = Buffer.alloc(size, 0x61);
      return timeLoop(args, () => roundTrip(alice, bob, plaintext));
    },

    // RT alternating direction: every message carries a new ratchet key (a DH ratchet step).
    async bench_ping_pong(args) {
      const size = count(args, 'size', 100, 16 << 20);
      const [alice, bob] = await establishedPair();
      const plaintext = Buffer.alloc(size, 0x61);
      return timeLoop(args, (_ctx, i) => (i % 2 === 0 ? roundTrip(alice, bob, plaintext) : roundTrip(bob, alice, plaintext)));
    },

    // processPreKeyBundle + first encrypt + first (PreKey) decrypt, Kyber1024 PQXDH. Fresh
    // parties and a fresh bundle per iteration are made outside the timed span.
    async bench_session_setup(args) {
      const plaintext = Buffer.alloc(100, 0x61);
      return timeLoop(
        args,
        async ({ alice, bob, bundle }) => {
          await SignalClient.processPreKeyBundle(bundle, bob.address, alice.address, alice.sessionStore, alice.identityStore);
          await roundTrip(alice, bob, plaintext);
        },
        {
          defaultIterations: 200,
          prepare: async () => {
            const alice = newParty();
            const bob = newParty();
            return { alice, bob, bundle: await publishBundle(bob) };
          },
        },
      );
    },

    // Sender keys: groupEncrypt + serialize + groupDecrypt of `size` bytes.
    async bench_group_round_trip(args) {
      const size = count(args, 'size', 100, 16 << 20);
      const alice = newParty();
      const bob = newParty();
      const distributionId = randomUUID();
      const skdm = await SenderKeyDistributionMessage.create(alice.address, distributionId, alice.senderKeyStore);
      await SignalClient.processSenderKeyDistributionMessage(
        alice.address,
        SenderKeyDistributionMessage.deserialize(skdm.serialize()),
        bob.senderKeyStore,
      );
      const plaintext = Buffer.alloc(size, 0x61);
      return timeLoop(args, async () => {
        const message = await SignalClient.groupEncrypt(alice.address, distributionId, alice.senderKeyStore, plaintext);
        const out = await SignalClient.groupDecrypt(alice.address, bob.senderKeyStore, message.serialize());
        if (out.length !== size) throw new Error('bench: group round trip lost bytes');
      });
    },

    // Encrypt + serialize on an established sending chain (no decrypt: the chain only advances).
    async bench_session_encrypt(args) {
      const size = count(args, 'size', 100, 16 << 20);
      const [alice, bob] = await establishedPair();
      const plaintext = Buffer.alloc(size, 0x61);
      return timeLoop(args, async () => {
        (await encrypt(alice, bob, plaintext)).serialize();
      });
    },

    // Deserialize + decrypt of the first message on a new chain (it carries a new ratchet key:
    // one DH ratchet step). Untimed before each: Bob replies (so Alice turns her ratchet) and
    // Alice encrypts the message.
    async bench_decrypt_first_on_chain(args) {
      const size = count(args, 'size', 100, 16 << 20);
      const [alice, bob] = await establishedPair();
      const plaintext = Buffer.alloc(size, 0x61);
      return timeLoop(args, async (body) => decrypt(bob, alice, CiphertextMessageType.Whisper, body), {
        defaultIterations: 300,
        prepare: async () => {
          await roundTrip(bob, alice, Buffer.from('turn'));
          return (await encrypt(alice, bob, plaintext)).serialize();
        },
      });
    },

    // Ratchet forward N: decrypting a message `n` ahead on the chain (n skipped message keys
    // derived and kept). Untimed before each: Alice encrypts n messages that are never
    // delivered, then the one that is. Bob's skipped keys accumulate up to libsignal's cap.
    async bench_ratchet_forward(args) {
      const n = count(args, 'n', 100, 2000);
      const [alice, bob] = await establishedPair();
      const plaintext = Buffer.alloc(100, 0x61);
      const result = await timeLoop(args, async (body) => decrypt(bob, alice, CiphertextMessageType.Whisper, body), {
        defaultIterations: 20,
        prepare: async () => {
          for (let i = 0; i < n; i++) await encrypt(alice, bob, plaintext);
          return (await encrypt(alice, bob, plaintext)).serialize();
        },
      });
      return { ...result, n };
    },

    // Sealed sender v1 RT on an established session: sealedSenderEncryptMessage (1:1 encrypt +
    // seal) then sealedSenderDecryptMessage (unseal, validate the certificate, 1:1 decrypt).
    async bench_sealed_sender_v1(args) {
      const size = count(args, 'size', 100, 16 << 20);
      const [alice, bob] = await establishedPair();
      const trustRoot = PrivateKey.generate();
      const trustPublic = trustRoot.getPublicKey();
      const cert = senderCertificate(alice, trustRoot);
      const plaintext = Buffer.alloc(size, 0x61);
      return timeLoop(args, async () => {
        const body = await SignalClient.sealedSenderEncryptMessage(
          plaintext,
          bob.address,
          cert,
          alice.sessionStore,
          alice.identityStore,
        );
        const result = await SignalClient.sealedSenderDecryptMessage(
          body,
          trustPublic,
          Date.now(),
          null,
          bob.address.name(),
          bob.address.deviceId(),
          bob.sessionStore,
          bob.identityStore,
          bob.preKeyStore,
          bob.signedPreKeyStore,
          bob.kyberPreKeyStore,
        );
        if (result.message().length !== size) throw new Error('bench: sealed sender v1 lost bytes');
      });
    },

    // Kyber1024 key generation (the only KEM operation the Node API exposes).
    async bench_kem_keygen(args) {
      return timeLoop(args, () => {
        KEMKeyPair.generate();
      }, { defaultIterations: 200 });
    },

    // Sealed sender v2: sealedSenderMultiRecipientEncrypt of a sender-key message to
    // `recipients` (each `devices` devices, all with established sessions).
    async bench_sealed_sender_v2(args) {
      const nRecipients = count(args, 'recipients', 10, 5000);
      const nDevices = count(args, 'devices', 1, 10);
      const alice = newParty();
      const addresses = [];
      for (let r = 0; r < nRecipients; r++) {
        const name = randomUUID();
        for (let d = 1; d <= nDevices; d++) {
          const device = new Party(`bench-${name}.${d}`, name, d, PrivateKey.generate(), 1 + r);
          await SignalClient.processPreKeyBundle(
            await publishBundle(device),
            device.address,
            alice.address,
            alice.sessionStore,
            alice.identityStore,
          );
          addresses.push(device.address);
        }
      }
      const distributionId = randomUUID();
      await SenderKeyDistributionMessage.create(alice.address, distributionId, alice.senderKeyStore);
      const inner = await SignalClient.groupEncrypt(
        alice.address,
        distributionId,
        alice.senderKeyStore,
        Buffer.alloc(100, 0x61),
      );
      const content = UnidentifiedSenderMessageContent.new(
        inner,
        senderCertificate(alice, PrivateKey.generate()),
        0,
        Buffer.alloc(16, 7),
      );
      let bytes = 0;
      const result = await timeLoop(
        args,
        async () => {
          const out = await SignalClient.sealedSenderMultiRecipientEncrypt(
            content,
            addresses,
            alice.identityStore,
            alice.sessionStore,
          );
          bytes = out.length;
        },
        { defaultIterations: 20 },
      );
      return { ...result, recipients: nRecipients, devices: nDevices, message_bytes: bytes };
    },

    // Safety number: Fingerprint.new (5200 iterations, version 2) + displayable string.
    async bench_safety_number(args) {
      const local = PrivateKey.generate().getPublicKey();
      const remote = PrivateKey.generate().getPublicKey();
      const localId = Buffer.from('+14152222222');
      const remoteId = Buffer.from('+14153333333');
      let digits = '';
      const result = await timeLoop(
        args,
        () => {
          digits = Fingerprint.new(5200, 2, localId, local, remoteId, remote).displayableFingerprint().toString();
        },
        { defaultIterations: 200 },
      );
      return { ...result, digits };
    },
  };
}
