"""The S3 access-log receiver: MinIO's audit webhook in, batches archived in the logs-archive bucket out.

`python -m services.access_log` (the stack runs it as `s3-audit`). Each POST from MinIO is one batch of audit
entries; it is written as objects (one per source bucket) with the log shipper's credentials, and only then
acknowledged. When the write fails (S3 down, credentials not set up yet) the receiver answers 503 and MinIO
keeps the batch in its on-disk queue and sends it again later, so nothing is lost while either side is down.

The shipper's own writes to the archive are not recorded: each would be logged by the next batch, forever.
"""

from __future__ import annotations

import argparse
import hmac
import logging
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from stores.errors import StoreError
from stores.objects.access_log import ROOT, AccessLogArchive, from_audit, parse_batch
from stores.objects.buckets import logs_bucket
from stores.objects.client import ObjectStore

logger = logging.getLogger("kredete.access_log")


class Receiver:
    def __init__(self, archive: AccessLogArchive, token: str, shipper: str) -> None:
        self.archive = archive
        self.token = token
        self.shipper = shipper
        self.received = self.archived = self.skipped = self.failed_batches = 0

    def own_write(self, r: Any) -> bool:
        """The shipper's own archive puts, also failed ones (no principal when its credentials were refused)."""
        return (r.bucket == self.archive.bucket and r.api == "PutObject" and r.key.startswith(f"{ROOT}/")
                and r.principal in (self.shipper, ""))

    async def audit(self, request: Request) -> PlainTextResponse:
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return PlainTextResponse("forbidden", status_code=403)
        try:
            entries = parse_batch(await request.body())
        except ValueError:
            logger.warning("unparsable audit batch dropped")
            return PlainTextResponse("bad batch", status_code=400)
        site = request.path_params.get("site", "")
        records = [r.model_copy(update={"site": r.site or site}) for r in map(from_audit, entries) if r is not None]
        kept = [r for r in records if not self.own_write(r)]
        self.received += len(entries)
        if kept:
            try:
                await self.archive.write(kept)
            except StoreError as exc:
                self.failed_batches += 1
                logger.warning("archiving %d access records failed (%s); MinIO will send them again", len(kept), exc)
                return PlainTextResponse("archive unavailable", status_code=503)
        self.archived += len(kept)
        self.skipped += len(entries) - len(kept)
        return PlainTextResponse("ok")

    async def health(self, request: Request) -> JSONResponse:
        return JSONResponse({"ok": True, "received": self.received, "archived": self.archived,
                             "skipped": self.skipped, "failed_batches": self.failed_batches})


def build_app(objects: ObjectStore, bucket: str, token: str, shipper: str) -> Starlette:
    receiver = Receiver(AccessLogArchive(objects, bucket), token, shipper)
    return Starlette(routes=[Route("/minio/audit", receiver.audit, methods=["POST"]),
                             Route("/minio/audit/{site:str}", receiver.audit, methods=["POST"]),
                             Route("/health", receiver.health, methods=["GET"])])


def main() -> None:
    import uvicorn

    from config import ports
    from config.settings import resolve
    from stores.objects.principals import credentials, objects_for

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=ports.S3_AUDIT)
    parser.add_argument("--data-dir", type=Path, default=None, help="working directory (the stack's)")
    args = parser.parse_args()
    if args.data_dir:
        os.chdir(args.data_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = resolve()
    if settings.s3_audit_token is None:
        raise SystemExit("KREDETE_S3_AUDIT_TOKEN is not set")
    objects = objects_for(settings, "log_shipper")
    shipper = credentials(settings, "log_shipper")[0] or ""
    app = build_app(objects, logs_bucket(settings.s3_bucket_prefix), settings.s3_audit_token.get_secret_value(),
                    shipper)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
