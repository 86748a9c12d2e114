"""S3: MinIO built from the Go module proxy, three instances, and the access-log receiver.

- `s3`: the primary region; `s3-dr`: the DR region (target of bucket replication); `s3-cold`: the remote tier
  the lifecycle transitions move objects to (the local stand-in for S3 Standard-IA / Glacier storage).
- All three serve TLS only (certificates from the local CA, `kredete/stack/tls.py`), so the buckets'
  `aws:SecureTransport` policy lets the non-root principals in; they trust the CA for replication and tiering.
- `s3` and `s3-dr` send MinIO's audit log (every S3 API call: who, what, when, from where, result) to
  `s3-audit`, the receiver that archives it in the logs-archive bucket. MinIO queues the events on disk
  (`audit-queue/`) while the receiver is down or answers an error, and replays them when it is back.
- Prometheus metrics (`/minio/v2/metrics/cluster`) are readable without a token (loopback only).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import ssl
import sys
import urllib.request

from config import ports
from config.paths import local_ca_file
from config.secrets import local_secrets
from kredete.stack.base import Server, StackError, port_open, run
from kredete.stack.tls import ensure_server_cert

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


#: Audit webhook target id (`MINIO_AUDIT_WEBHOOK_*_<id>`); audit entries per POST when the receiver keeps up.
AUDIT_TARGET = "kredete"
AUDIT_BATCH_SIZE = 100


def tls_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(local_ca_file()))


def audit_endpoint(site: str) -> str:
    """The receiver's URL for one server (the path names the site: this MinIO sets no siteName in entries)."""
    return f"http://127.0.0.1:{ports.S3_AUDIT}/minio/audit/{site}"


class MinioServer(Server):
    name = "s3"
    port = ports.S3
    console_port = ports.S3_CONSOLE
    start_timeout = 60.0
    #: Send the audit log to the access-log receiver.
    audit = True
    #: `MINIO_SITE_NAME`, and the path of its audit webhook (the access log's `site`)
    site = "primary"
    #: serve TLS (every server of the stack does; tests run a plain-HTTP scratch one to show the policy refusal)
    tls = True

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

    @property
    def certs_dir(self):
        return self.data_dir / "certs"

    def command(self) -> tuple[list[str], dict[str, str]]:
        secrets = local_secrets()
        env = {"MINIO_ROOT_USER": ROOT_USER, "MINIO_ROOT_PASSWORD": secrets["minio_root"],
               "MINIO_BROWSER": "off", "MINIO_UPDATE": "off", "MINIO_CI_CD": "1",
               "MINIO_KMS_SECRET_KEY": kms_secret_key(), "MINIO_PROMETHEUS_AUTH_TYPE": "public",
               "MINIO_SITE_NAME": self.site}
        if self.audit:
            t = AUDIT_TARGET
            env |= {f"MINIO_AUDIT_WEBHOOK_ENABLE_{t}": "on",
                    f"MINIO_AUDIT_WEBHOOK_ENDPOINT_{t}": audit_endpoint(self.site),
                    f"MINIO_AUDIT_WEBHOOK_AUTH_TOKEN_{t}": f"Bearer {secrets['minio_audit_token']}",
                    # on disk, so nothing is lost while the receiver (or MinIO itself) is down
                    f"MINIO_AUDIT_WEBHOOK_QUEUE_DIR_{t}": str(self.data_dir / "audit-queue"),
                    f"MINIO_AUDIT_WEBHOOK_QUEUE_SIZE_{t}": "100000",
                    f"MINIO_AUDIT_WEBHOOK_BATCH_SIZE_{t}": str(AUDIT_BATCH_SIZE)}
        certs = ["--certs-dir", str(self.certs_dir)] if self.tls else []
        return [str(self.binary), "server", str(self.data_dir / "data"), "--address",
                f"127.0.0.1:{self.port}", "--console-address", f"127.0.0.1:{self.console_port}", *certs,
                "--quiet"], env

    def prepare(self) -> None:
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        if self.audit:
            (self.data_dir / "audit-queue").mkdir(exist_ok=True)
        if self.tls:
            ensure_server_cert(self.certs_dir, f"kredete {self.name}")

    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            with urllib.request.urlopen(f"{self.url()}/minio/health/ready", timeout=2,  # noqa: S310
                                        context=tls_context() if self.tls else None) as resp:
                return resp.status == 200
        except Exception:
            return False


class MinioReplicaServer(MinioServer):
    """Second region, the target of cross-region replication."""

    name = "s3-dr"
    port = ports.S3_DR
    console_port = ports.S3_DR_CONSOLE
    site = "dr"


class MinioColdServer(MinioServer):
    """The remote tier: lifecycle transitions move object data here (STANDARD_IA and GLACIER tiers)."""

    name = "s3-cold"
    port = ports.S3_COLD
    console_port = ports.S3_COLD_CONSOLE
    site = "cold"
    audit = False  # its only client is the primary's tiering user; the primary's audit log records the access


class AccessLogReceiver(Server):
    """`services/access_log.py` run as a process: takes MinIO's audit webhook, archives batches in S3."""

    name = "s3-audit"
    port = ports.S3_AUDIT
    start_timeout = 30.0

    def provision(self) -> None:
        """Nothing to install: it runs on the project's own virtualenv."""

    def version(self) -> str:
        return f"kredete access-log receiver (Python {sys.version.split()[0]})"

    def binary_name(self) -> str:
        return os.path.basename(sys.executable)

    def command(self) -> tuple[list[str], dict[str, str]]:
        from config.paths import REPO_ROOT

        # Port and token come from the settings (KREDETE_PORT_*, secrets.json), never from argv.
        return [sys.executable, "-m", "services.access_log", "--data-dir", str(self.data_dir)], {
            "PYTHONPATH": str(REPO_ROOT)}

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            with urllib.request.urlopen(f"{self.url()}/health", timeout=2) as resp:  # noqa: S310
                return resp.status == 200
        except Exception:
            return False
