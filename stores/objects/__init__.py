"""S3: documents, ML artifacts, backups, log archive, static assets."""

from stores.objects.client import BUCKETS, PRESIGN_TTL_S, ObjectStore

__all__ = ["BUCKETS", "PRESIGN_TTL_S", "ObjectStore"]
