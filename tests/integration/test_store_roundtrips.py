"""Each adapter does a real round trip against its real server."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

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


async def test_mongo_round_trip_via_motor(stores):
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
    async with httpx.AsyncClient() as client:
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
