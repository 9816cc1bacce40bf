"""What goes over the wire between clients: the bytes of end-to-end messages.

* :mod:`.messages` -- the ciphertext messages (SignalMessage, PreKeySignalMessage, sender-key
  messages, plaintext content);
* :mod:`.content` -- the application content inside them, and its padding;
* :mod:`.sealed_sender` -- the sealed-sender certificates and v1/v2 envelopes;
* :mod:`.fingerprint` -- scannable safety numbers;
* :mod:`.provisioning` -- the device-linking (provisioning) envelope and message.

Only bytes: the cryptography that fills these formats is :mod:`securemsg.protocol`. Not here:
what a client stores on its disk (:mod:`securemsg.records`) and the frames it exchanges with
the relay (:mod:`securemsg.relay_protocol`).
"""
