"""OpenSearch's part of data-subject requests: every document of a user in every index, gone (audit documents
stay, with the user masked), and a raw scan of every index for `kredete dsr verify`.

The indexes are derived data: deleting a user's documents loses nothing the sources still hold, and the feeds
read views that leave erased users out (`transactions_searchable`, `users_searchable`,
`audit_logs_searchable`), so a rebuild does not bring them back. Every generation of an index family counts
(the live one behind the alias, one kept by `rebuild(keep_old=True)`, time-based ones).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Sequence
from typing import Any

from stores.fingerprints import Matcher, judge, strings
from stores.search.catalog import AUDIT_LOGS, CHUNKS, CREDIT_REPORTS, DISPUTES, INGEST_STATE, TRANSACTIONS, USERS
from stores.search.client import SearchStore

FAMILIES = (CHUNKS, TRANSACTIONS, USERS, AUDIT_LOGS, CREDIT_REPORTS, DISPUTES, INGEST_STATE)
MASK = "[erased]"


def _pattern(prefix: str) -> re.Pattern[str]:
    names = "|".join(re.escape(f) for f in FAMILIES)
    return re.compile(rf"^{re.escape(prefix)}-({names})(-\d{{6}}|-\d{{4}}\.\d{{2}}(-\d{{6}})?)?$")


async def indices(search: SearchStore) -> list[str]:
    """Concrete indices of this prefix's families (every generation; not another dataset's `<prefix>-e2e-*`)."""
    rows = await search.call(search.os.cat.indices(index=f"{search.prefix}-*", format="json",
                                                   expand_wildcards="open"))
    pat = _pattern(search.prefix)
    return sorted(r["index"] for r in rows if pat.match(r["index"]))


def _is_audit(search: SearchStore, index: str) -> bool:
    return index.startswith(search.index_name(AUDIT_LOGS))


def _leaves(props: dict[str, Any]) -> int:
    """Searchable fields of a mapping, multi-fields and object sub-fields included: what `fields: ["*"]`
    expands to (an upper bound, which is what the clause limit needs)."""
    n = 0
    for p in props.values():
        n += _leaves(p["properties"]) if "properties" in p else 1
        n += len(p.get("fields") or {})
    return n


async def _fields(search: SearchStore, index: str) -> tuple[list[str], list[str], int]:
    """An index's keyword fields, flat_object fields and number of searchable fields."""
    mapping = await search.call(search.os.indices.get_mapping(index=index))
    props = next(iter(mapping.values()))["mappings"].get("properties", {})
    kws = [n for n, p in props.items() if p.get("type") == "keyword"]
    flats = [n for n, p in props.items() if p.get("type") == "flat_object"]
    return kws, flats, _leaves(props)


def _query(user_ids: Sequence[str], keywords: list[str], flats: list[str]) -> dict[str, Any]:
    should: list[dict[str, Any]] = []
    if "user_id" in keywords:
        should.append({"terms": {"user_id": list(user_ids)}})
    for uid in user_ids:
        should.append({"multi_match": {"query": uid, "type": "phrase", "fields": ["*"], "lenient": True}})
        should += [{"wildcard": {k: {"value": f"*{uid}*"}}} for k in keywords if k != "user_id"]
        should += [{"term": {f: uid}} for f in flats]
    return {"bool": {"should": should, "minimum_should_match": 1}}


#: OpenSearch refuses a query of more than `indices.query.bool.max_clause_count` (1,024 by default) clauses,
#: nested ones counted. A document index's query is, per user, a phrase match over every field (one clause per
#: field once expanded) plus a wildcard per keyword field and a term per flat_object field; the audit mask is a
#: wildcard per user. Each index gets the most users per query that stays under this bound.
MAX_CLAUSES = 1000
#: Users per audit-mask query: a leading wildcard per user is slow to run, and 500 of them took over 10 s on a
#: loaded 2-core machine; 200 keeps one query within seconds
AUDIT_CHUNK = 200
#: A by-query request over a large index can take longer than the store's default timeout (10 s): the call
#: waits this long instead of reporting an outage that is only a slow answer
BY_QUERY_TIMEOUT_S = 300


def users_per_query(fields: int, keywords: int, flats: int) -> int:
    """How many users one query of an index can name without passing the clause limit."""
    return max(1, MAX_CLAUSES // max(1, fields + keywords + flats))


async def erase(search: SearchStore, user_ids: Sequence[str]) -> dict[str, int]:
    """Delete the users' documents from every index but the audit log's, where they are masked; per index,
    how many. Idempotent. The indices and their fields are read once; the queries go in chunks of users sized
    per index, and each index is refreshed once at its end (not after every chunk)."""
    ids = [str(u) for u in user_ids]
    out: dict[str, int] = {}
    for index in await indices(search):
        if _is_audit(search, index):
            # the audit trail stays: the user id is removed, a subject naming the user (`user:<id>`) masked
            masked = sum([await _mask_audit(search, index, chunk) for chunk in _chunks(ids, AUDIT_CHUNK)])
            if masked:
                out[f"{index} (masked)"] = masked
            await search.call(search.os.indices.refresh(index=index))
            continue
        if index.startswith(search.index_name(INGEST_STATE)):
            # checkpoints, skip records and tombstones keep ids in unindexed fields: read them all (small), once
            gone = [doc_id async for doc_id, src in _documents(search, index) if _names(doc_id, src, ids)]
            for doc_id in gone:
                await search.call(search.os.delete(index=index, id=doc_id, refresh=True))
            if gone:
                out[index] = len(gone)
            continue
        keywords, flats, fields = await _fields(search, index)
        deleted = 0
        for chunk in _chunks(ids, users_per_query(fields, len(keywords), len(flats))):
            res = await search.call(search.os.delete_by_query(index=index, conflicts="proceed",
                                                              body={"query": _query(chunk, keywords, flats)},
                                                              request_timeout=BY_QUERY_TIMEOUT_S))
            deleted += int(res.get("deleted") or 0)
        await search.call(search.os.indices.refresh(index=index))
        if deleted:
            out[index] = deleted
    return out


def _chunks(ids: list[str], size: int) -> list[list[str]]:
    return [ids[start:start + size] for start in range(0, len(ids), size)]


async def _mask_audit(search: SearchStore, index: str, ids: list[str]) -> int:
    res = await search.call(search.os.update_by_query(index=index, conflicts="proceed",
                                                      request_timeout=BY_QUERY_TIMEOUT_S, body={
        "query": {"bool": {"should": [{"terms": {"user_id": ids}},
                                      *({"wildcard": {"actor_subject": {"value": f"*{u}*"}}} for u in ids)],
                           "minimum_should_match": 1}},
        "script": {"lang": "painless", "params": {"ids": ids, "mask": MASK},
                   "source": "if (ctx._source.user_id != null && params.ids.contains(ctx._source.user_id)) "
                             "{ ctx._source.user_id = null } "
                             "for (String id : params.ids) { if (ctx._source.actor_subject != null && "
                             "ctx._source.actor_subject.contains(id)) "
                             "{ ctx._source.actor_subject = params.mask } }"}}))
    return int(res.get("updated") or 0)


def _names(doc_id: str, src: dict[str, Any], ids: Sequence[str]) -> bool:
    text = doc_id + json.dumps(src, default=str)
    return any(u in text for u in ids)


async def _documents(search: SearchStore, index: str, *, page: int = 1000):
    """(id, source) of every document of an index, embeddings left out (a scroll)."""
    body: dict[str, Any] = {"size": page, "sort": ["_doc"], "_source": {"excludes": ["embedding"]},
                            "query": {"match_all": {}}}
    res = await search.call(search.os.search(index=index, body=body, scroll="2m"))
    scroll_id = res.get("_scroll_id")
    try:
        while res["hits"]["hits"]:
            for hit in res["hits"]["hits"]:
                yield hit["_id"], hit.get("_source") or {}
            res = await search.call(search.os.scroll(scroll_id=scroll_id, scroll="2m"))
            scroll_id = res.get("_scroll_id", scroll_id)
    finally:
        if scroll_id:
            with contextlib.suppress(Exception):  # a scroll left to expire on its own is harmless
                await search.call(search.os.clear_scroll(scroll_id=scroll_id))


async def scan(search: SearchStore, user_id: str, matcher: Matcher | None) -> dict[str, dict[str, int]]:
    """Raw scan of every document of every index (embeddings left out): documents naming the user, documents
    holding their personal data."""
    out: dict[str, dict[str, int]] = {}
    for index in await indices(search):
        counts = {"documents": 0, "id_refs": 0, "pii": 0, "weak_unattributed": 0}
        async for doc_id, src in _documents(search, index):
            counts["documents"] += 1
            v = judge([doc_id, *strings(json.loads(json.dumps(src, default=str)))], user_id, matcher)
            counts["id_refs"] += v.id_ref
            counts["pii"] += v.attributable
            counts["weak_unattributed"] += bool(v.kinds) and not v.attributable
        out[index] = counts
    return out
