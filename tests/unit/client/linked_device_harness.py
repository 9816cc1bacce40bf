"""Extra devices of an account for the client tests (the account's identity, ACI and access
key; a new registration id and prekeys; device id N), registered with the relay."""

from __future__ import annotations

from pathlib import Path

from client_harness import BATCH, LOW_WATER

from securemsg.client import Client
from securemsg.client.store import ClientStore
from securemsg.relay.server import RelayServer


async def add_device(
    primary: Client, relay: RelayServer, path: Path, device_id: int, **kw: object
) -> Client:
    """Create device ``device_id`` of ``primary``'s account at ``path`` and register it."""
    store = ClientStore.open_client(path, primary.store.get_identity_key_pair(), 1000 + device_id)
    access_key = primary.store.get_meta_bytes("access_key")
    assert access_key is not None
    with store.transaction():
        store.set_meta("aci", primary.aci)
        store.set_meta("device_id", device_id)
        store.set_meta("relay_url", relay.url)
        store.set_meta("access_key", access_key)
        store.set_meta("registered", 0)
        store.set_meta("prekey_batch", BATCH)
        store.set_meta("low_water", LOW_WATER)
        store.set_meta("trust_root", relay.trust_root_public.to_bytes())
    client = Client(store, **kw)  # type: ignore[arg-type]
    await client.register()
    return client
