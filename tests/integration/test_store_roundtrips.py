"""Each adapter does a real round trip against its real server."""

from __future__ import annotations

import asyncio
import ssl
import uuid

import httpx
import pytest

from config.ports import free_port
from stores.errors import StoreConfigError, StoreUnavailable


async def test_postgres_write_then_read_on_primary_and_replica(stores):
    pg = stores.postgres
    table = f"roundtrip_{uuid.uuid4().hex[:8]}"
    async with pg.transaction() as conn:
        await conn.execute(f"CREATE TABLE {table} (id uuid PRIMARY KEY, amount_minor bigint NOT NULL)")
        row_id = uuid.uuid4()
        await conn.execute(f"INSERT INTO {table} VALUES ($1, $2)", row_id, 123_456)
    try:
        async with pg.connection() as conn:
            assert await conn.fetchval(f"SELECT amount_minor FROM {table} WHERE id = $1", row_id) == 123_456
        assert pg.replica is not None, "replica pool should be connected on the local stack"
        seen = None
        for _ in range(50):  # streaming replication is asynchronous: wait for the replay
            async with pg.connection(replica=True) as conn:
                exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table)
                if exists:
                    seen = await conn.fetchval(f"SELECT amount_minor FROM {table} WHERE id = $1", row_id)
                    if seen is not None:
                        break
            await asyncio.sleep(0.1)
        assert seen == 123_456
        async with pg.connection(replica=True) as conn:
            assert await conn.fetchval("SELECT pg_is_in_recovery()") is True
        health = await pg.health()
        assert health["primary"] is True and health["replica"] is True
    finally:
        async with pg.connection() as conn:
            await conn.execute(f"DROP TABLE {table}")


async def test_postgres_replica_refuses_writes(stores):
    import asyncpg

    async with stores.postgres.connection(replica=True) as conn:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await conn.execute("CREATE TABLE must_fail (x int)")


async def test_redis_round_trip_with_ttl_and_aof(stores):
    cache = stores.cache
    key = cache.key("test", uuid.uuid4().hex)
    await cache.set_json(key, {"score": 712, "currency": "NGN"}, ttl_s=300)
    assert await cache.get_json(key) == {"score": 712, "currency": "NGN"}
    ttl = await cache.redis.ttl(key)
    assert 0 < ttl <= 300
    assert await cache.invalidate(key) == 1
    assert await cache.get_json(key) is None
    assert (await cache.health())["aof_enabled"] is True


async def test_mongo_round_trip_via_pymongo(stores):
    coll = stores.mongo.db[f"roundtrip_{uuid.uuid4().hex[:8]}"]
    try:
        doc = {"user_id": str(uuid.uuid4()), "accounts": [{"kind": "card", "balance_minor": 5000}], "version": 1}
        res = await coll.insert_one(doc)
        got = await coll.find_one({"_id": res.inserted_id})
        assert got["accounts"][0]["balance_minor"] == 5000
        assert got["user_id"] == doc["user_id"]
    finally:
        await coll.drop()


async def test_opensearch_index_search_and_knn(stores):
    search = stores.search
    health = await search.health()
    index = search.index_name(f"roundtrip-{uuid.uuid4().hex[:8]}")
    os_ = search.os
    body = {
        "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
        "mappings": {"properties": {
            "text": {"type": "text"},
            "vec": {"type": "knn_vector", "dimension": 3,
                    "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}},
        }},
    }
    if not health["knn"]:
        pytest.skip("OpenSearch runs without the k-NN plugin (fallback); see README component table")
    await search.call(os_.indices.create(index=index, body=body))
    try:
        docs = [("a", "transfer to Lagos", [1.0, 0.0, 0.0]), ("b", "credit score tips", [0.0, 1.0, 0.0]),
                ("c", "fx fees for Ghana", [0.0, 0.0, 1.0])]
        for doc_id, text, vec in docs:
            await search.call(os_.index(index=index, id=doc_id, body={"text": text, "vec": vec}, refresh=True))
        res = await search.call(os_.search(index=index, body={"query": {"match": {"text": "credit"}}}))
        assert [h["_id"] for h in res["hits"]["hits"]] == ["b"]
        knn = await search.call(os_.search(index=index, body={
            "size": 2, "query": {"knn": {"vec": {"vector": [0.9, 0.1, 0.0], "k": 2}}}}))
        assert [h["_id"] for h in knn["hits"]["hits"]] == ["a", "b"]
    finally:
        await search.call(os_.indices.delete(index=index))


async def test_s3_put_get_and_presigned_url(stores):
    objects = stores.objects
    bucket = f"roundtrip-{uuid.uuid4().hex[:8]}"
    await objects.ensure_bucket(bucket)
    key = "kyc/user-1/passport.txt"
    version = await objects.put(bucket, key, b"synthetic passport scan", content_type="text/plain")
    assert version, "bucket is versioned, so a put returns a version id"
    assert await objects.get(bucket, key) == b"synthetic passport scan"
    url = objects.presigned_get(bucket, key)
    assert "X-Amz-Expires=900" in url
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=stores.settings.s3_ca_file)) as client:
        ok = await client.get(url)
        assert ok.status_code == 200 and ok.content == b"synthetic passport scan"
        tampered = await client.get(url.replace("passport.txt", "other.txt"))
        assert tampered.status_code == 403
    async with objects.client() as s3:
        listed = await s3.list_object_versions(Bucket=bucket)
        for v in listed.get("Versions", []):
            await s3.delete_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
        await s3.delete_bucket(Bucket=bucket)


async def test_unreachable_servers_fail_fast_with_typed_errors(settings):
    from stores.cache import CacheStore
    from stores.mongo import MongoStore
    from stores.postgres import PostgresStore

    dead = "127.0.0.1:1"  # nothing listens on port 1
    for store in (PostgresStore(f"postgresql://u:p@{dead}/db", timeout=1.0),
                  CacheStore(f"redis://{dead}/0", timeout=1.0),
                  MongoStore(f"mongodb://{dead}/", timeout=1.0)):
        started = asyncio.get_running_loop().time()
        with pytest.raises(StoreUnavailable) as info:
            await store.connect()
        assert asyncio.get_running_loop().time() - started < 10
        assert "p@" not in str(info.value), "credentials must not appear in the error"
        await store.close()


async def test_wrong_password_is_a_config_error_without_the_password(settings):
    from stores.postgres import PostgresStore

    url = settings.postgres_url.get_secret_value().replace("kredete:", "kredete:WRONG", 1)
    with pytest.raises(StoreConfigError) as info:
        await PostgresStore(url, timeout=2.0).connect()
    assert "WRONG" not in str(info.value)


# --- OpenSearch and S3: unreachable, silent, wrong credentials; every S3 error typed -----------------------

@pytest.fixture
def silent_port():
    """A port that accepts TCP connections (the kernel's backlog) and never answers."""
    import socket

    sock = socket.socket()
    port = free_port()
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    yield port
    sock.close()


@pytest.fixture
def http_stub():
    """A loopback HTTP server answering every request with the status it is given (an auth proxy's refusal)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    state = {"status": 401}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = json.dumps({"error": {"type": "security_exception", "reason": "denied"},
                               "status": state["status"]}).encode()
            self.send_response(state["status"])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_HEAD = do_POST = do_PUT = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state, server.server_address[1]
    server.shutdown()
    server.server_close()


async def _fails_fast(make_store, error, *, within: float = 10.0):
    loop = asyncio.get_running_loop()
    store = make_store()
    started = loop.time()
    try:
        with pytest.raises(error) as info:
            await store.connect()
    finally:
        await store.close()
    assert loop.time() - started < within, f"{type(store).__name__} took {loop.time() - started:.1f}s"
    return str(info.value)


async def test_opensearch_and_s3_unreachable_or_silent_fail_fast_with_typed_errors(silent_port):
    from stores.objects import ObjectStore
    from stores.search import SearchStore

    for port in (1, silent_port):  # refused, and accepted but never answered
        msg = await _fails_fast(lambda p=port: SearchStore(f"http://admin:hunter2@127.0.0.1:{p}", timeout=1.0),
                                StoreUnavailable)
        assert "hunter2" not in msg and "admin:***" in msg
        msg = await _fails_fast(lambda p=port: ObjectStore(f"http://127.0.0.1:{p}", "AKIAEXAMPLE", "hunter2",
                                                           timeout=1.0), StoreUnavailable)
        assert "hunter2" not in msg and "AKIAEXAMPLE" not in msg


async def test_opensearch_refused_credentials_are_config_errors(http_stub):
    from stores.search import SearchStore

    state, port = http_stub
    for status in (401, 403):
        state["status"] = status
        msg = await _fails_fast(lambda: SearchStore(f"http://admin:hunter2@127.0.0.1:{port}", timeout=2.0),
                                StoreConfigError)
        assert f"HTTP {status}" in msg and "hunter2" not in msg


async def test_s3_wrong_credentials_are_config_errors(settings):
    from stores.objects import ObjectStore

    good_key, good_secret = settings.s3_access_key.get_secret_value(), settings.s3_secret_key.get_secret_value()
    for key, secret, code in ((good_key, "WRONG-" + good_secret, "SignatureDoesNotMatch"),
                              ("nobody", good_secret, "InvalidAccessKeyId")):
        msg = await _fails_fast(lambda k=key, s=secret: ObjectStore(settings.s3_url, k, s, timeout=2.0,
                                                                    verify=settings.s3_ca_file),
                                StoreConfigError)
        assert code in msg
        assert good_secret not in msg and "WRONG" not in msg


async def test_s3_without_any_credentials_is_a_config_error(settings, monkeypatch, tmp_path):
    from stores.objects import ObjectStore

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    msg = await _fails_fast(lambda: ObjectStore(settings.s3_url, None, None, timeout=2.0, verify=settings.s3_ca_file),
                            StoreConfigError)
    assert "no S3 credentials" in msg


async def test_s3_error_responses_are_typed_and_still_client_errors(stores):
    from botocore.exceptions import ClientError

    from stores.errors import Conflict, InvalidData, NotFound

    objects = stores.objects
    bucket = f"typed-{uuid.uuid4().hex[:8]}"
    await objects.ensure_bucket(bucket, versioning=False)
    try:
        await objects.put(bucket, "a.txt", b"hello")
        with pytest.raises(NotFound) as info:
            await objects.get(bucket, "missing.txt")
        assert isinstance(info.value, ClientError) and info.value.response["Error"]["Code"] == "NoSuchKey"
        with pytest.raises(NotFound):
            await objects.get(f"no-such-{bucket}", "a.txt")
        with pytest.raises(Conflict, match="BucketAlreadyOwnedByYou"):
            async with objects.client() as s3:
                await s3.create_bucket(Bucket=bucket)
        with pytest.raises(Conflict, match="BucketNotEmpty"):
            async with objects.client() as s3:
                await s3.delete_bucket(Bucket=bucket)
        with pytest.raises(InvalidData, match="InvalidRange"):
            async with objects.client() as s3:
                await s3.get_object(Bucket=bucket, Key="a.txt", Range="bytes=100-200")
        with pytest.raises(InvalidData, match="parameters are invalid"):
            async with objects.client() as s3:
                await s3.put_object(Bucket="Not A Bucket!", Key="x", Body=b"x")
    finally:
        async with objects.client() as s3:
            await s3.delete_object(Bucket=bucket, Key="a.txt")
            await s3.delete_bucket(Bucket=bucket)
