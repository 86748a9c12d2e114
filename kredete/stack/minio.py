"""S3: MinIO built from the Go module proxy; two instances so replication can be exercised."""

from __future__ import annotations

import base64
import hashlib
import shutil
import urllib.request

from config import ports
from config.secrets import local_secrets
from kredete.stack.base import Server, StackError, port_open, run

# MinIO publishes no semver tags; this pseudo-version pins one commit on the module proxy.
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MODULE = "github.com/minio/minio"
ROOT_USER = "kredete"
#: Name of the static KMS key MinIO uses for SSE-S3 / SSE-KMS (and to encrypt its own IAM/config data).
KMS_KEY_NAME = "kredete-local-key"


def kms_secret_key() -> str:
    """`MINIO_KMS_SECRET_KEY` value: `<key-name>:<base64 of 32 bytes>`, derived from a local secret.

    Both instances (primary and DR) share it, so replicated SSE objects decrypt on either side.
    Changing it makes existing encrypted objects unreadable: it lives in `.local/secrets.json` with the data.
    """
    raw = hashlib.sha256(local_secrets()["minio_kms_key"].encode()).digest()
    return f"{KMS_KEY_NAME}:{base64.b64encode(raw).decode()}"


class MinioServer(Server):
    name = "s3"
    port = ports.S3
    console_port = ports.S3_CONSOLE
    start_timeout = 60.0

    @property
    def binary(self):
        return self.cache / "bin" / f"minio-{MINIO_VERSION}"

    def provision(self) -> None:
        if self.binary.exists():
            return
        if not shutil.which("go"):
            raise StackError("Go is needed to build MinIO (install golang or put `go` on PATH)")
        gobin = self.cache / "gobin-minio"
        run(["go", "install", "-trimpath", f"{MODULE}@{MINIO_VERSION}"], cwd=self.cache, timeout=2400,
            env={**__import__("os").environ, "GOBIN": str(gobin), "CGO_ENABLED": "0"})
        (gobin / "minio").replace(self.binary)

    def version(self) -> str:
        if not self.binary.exists():
            raise StackError("not provisioned")
        stamp = MINIO_VERSION.split("-")[1]
        return f"MinIO {stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} ({MINIO_VERSION[-12:]})"

    def binary_name(self) -> str:
        return self.binary.name

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {"MINIO_ROOT_USER": ROOT_USER, "MINIO_ROOT_PASSWORD": local_secrets()["minio_root"],
               "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_CI_CD": "1",
               "MINIO_KMS_SECRET_KEY": kms_secret_key()}
        return [str(self.binary), "server", str(self.data_dir / "data"), "--address",
                f"127.0.0.1:{self.port}", "--console-address", f"127.0.0.1:{self.console_port}", "--quiet"], env

    def prepare(self) -> None:
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            with urllib.request.urlopen(f"{self.url()}/minio/health/ready", timeout=2) as resp:  # noqa: S310
                return resp.status == 200
        except Exception:
            return False


class MinioReplicaServer(MinioServer):
    """Second region, the target of cross-region replication."""

    name = "s3-dr"
    port = ports.S3_DR
    console_port = ports.S3_DR_CONSOLE
