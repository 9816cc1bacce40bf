"""securemsg for asyncio: async store protocols, async recipes, a durable async SQLite store.

* :mod:`securemsg.aio.store` -- :class:`AsyncProtocolStore` (one coroutine per method of
  :class:`securemsg.ProtocolStore`, plus ``commit`` of an operation's writes in one
  transaction) and :class:`AsyncStoreAdapter` (an in-memory sync store as an async one);
* :mod:`securemsg.aio.sqlite` -- :class:`AsyncSqliteProtocolStore`: the SQLite store on its
  own thread, so the event loop never waits for SQLite or an fsync;
* :mod:`securemsg.aio.recipes` -- the recipes (1:1, batches, sealed sender, groups) with the
  signatures of the sync ones: await the loads, run the unchanged sync core on in-memory
  copies, await one commit. A recipe that raises committed nothing.

The names are also exported by :mod:`securemsg` under an ``async_`` / ``Async`` prefix; this
package exports them with the sync names, for ``from securemsg import aio`` and
``await aio.message_encrypt(...)``.

Not here: the sync recipes and stores this mirrors (:mod:`securemsg.cipher`,
:mod:`securemsg.store`) and the async client SDK (:mod:`securemsg.client`).
"""

from __future__ import annotations

from securemsg.aio.recipes import (
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    message_decrypt,
    message_decrypt_batch,
    message_encrypt,
    message_encrypt_batch,
    process_prekey_bundle,
    process_sender_key_distribution_message,
    run_staged,
    sealed_sender_decrypt,
    sealed_sender_encrypt,
)
from securemsg.aio.sqlite import AsyncSqliteProtocolStore
from securemsg.aio.store import (
    AsyncIdentityKeyStore,
    AsyncKyberPreKeyStore,
    AsyncPreKeyStore,
    AsyncProtocolStore,
    AsyncSenderKeyStore,
    AsyncSessionStore,
    AsyncSignedPreKeyStore,
    AsyncStoreAdapter,
)
from securemsg.store.staging import (
    MarkKyberPreKeyUsed,
    RemovePreKey,
    SaveIdentity,
    StoreSenderKey,
    StoreSession,
    StoreWrite,
    apply_writes,
)

__all__ = [
    "AsyncIdentityKeyStore",
    "AsyncKyberPreKeyStore",
    "AsyncPreKeyStore",
    "AsyncProtocolStore",
    "AsyncSenderKeyStore",
    "AsyncSessionStore",
    "AsyncSignedPreKeyStore",
    "AsyncSqliteProtocolStore",
    "AsyncStoreAdapter",
    "MarkKyberPreKeyUsed",
    "RemovePreKey",
    "SaveIdentity",
    "StoreSenderKey",
    "StoreSession",
    "StoreWrite",
    "apply_writes",
    "create_sender_key_distribution_message",
    "group_decrypt",
    "group_encrypt",
    "message_decrypt",
    "message_decrypt_batch",
    "message_encrypt",
    "message_encrypt_batch",
    "process_prekey_bundle",
    "process_sender_key_distribution_message",
    "run_staged",
    "sealed_sender_decrypt",
    "sealed_sender_encrypt",
]
