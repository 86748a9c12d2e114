"""Per-user data keys (crypto-shredding): the key store that stands for a KMS."""

from stores.keys.store import Fingerprint, KeyDestroyed, Keyring, KeyStore, canonical_user, keystore_path

__all__ = ["Fingerprint", "KeyDestroyed", "KeyStore", "Keyring", "canonical_user", "keystore_path"]
