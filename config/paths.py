"""Where the project keeps data (in the repo, git-ignored) and caches (outside the repo)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def local_dir() -> Path:
    """Data of the local stack: `.local/` in the repo unless KREDETE_LOCAL_DIR says otherwise."""
    return Path(os.environ.get("KREDETE_LOCAL_DIR", REPO_ROOT / ".local")).resolve()


def cache_dir() -> Path:
    """Built binaries and downloads, shared by every clone on this machine."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kredete"
    return Path(os.environ.get("KREDETE_CACHE_DIR", default)).resolve()


def local_ca_file() -> Path:
    """The local stack's certificate authority (TLS of the local MinIO servers); made by `kredete stack up`."""
    return local_dir() / "tls" / "ca.crt"
