"""Per-user data keys (crypto-shredding): OpenBao when configured, else the local file that stands for a KMS."""

from __future__ import annotations

from stores.keys.store import Fingerprint, KeyDestroyed, Keyring, KeyStore, canonical_user, keystore_path


def open_keystore(settings: object, keyring: Keyring) -> KeyStore:
    """The settings' key store: OpenBao (`KREDETE_KEYSTORE_URL` + `KREDETE_KEYSTORE_TOKEN`), else the SQLite
    stand-in at `keystore_path(settings)` (data keys wrapped by the keyring)."""
    url = getattr(settings, "keystore_url", None)
    if url:
        from stores.errors import StoreConfigError
        from stores.keys.openbao import OpenBaoKeyStore

        token = getattr(settings, "keystore_token", None)
        if token is None:
            raise StoreConfigError("KREDETE_KEYSTORE_URL is set but KREDETE_KEYSTORE_TOKEN is not", store="keystore")
        return OpenBaoKeyStore.from_url(url, token.get_secret_value())  # type: ignore[return-value]
    return KeyStore(keystore_path(settings), keyring)


__all__ = ["Fingerprint", "KeyDestroyed", "KeyStore", "Keyring", "canonical_user", "keystore_path", "open_keystore"]
