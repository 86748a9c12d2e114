"""AI logging API: redaction before write, validation, bounded queue, idempotent retries, retention."""

from __future__ import annotations

from datetime import timedelta

import bson
import pytest

from stores.errors import InvalidData
from stores.mongo import collections as names
from stores.mongo.ai_logging import AILogger
from stores.mongo.retention import purge_expired
from tests.integration.mongo.factories import uid

PHONE = "08031234567"


@pytest.fixture
def queue(tmp_path):
    """A durable queue of this test's own (the default one under .local/ is shared by every logger)."""
    return tmp_path / "ai-log.sqlite"


def redactor(text: str) -> str:
    return text.replace(PHONE, "[PHONE]").replace("22123456789", "[BVN]")


async def test_every_log_kind_is_written_redacted(db, queue):
    logger = await AILogger(db, redactor=redactor, queue=queue).start()
    user, conv = uid(), uid()
    await logger.log_conversation_turn(conv, user, "user", f"call me on {PHONE}", principal_subject="cust-1")
    await logger.log_conversation_turn(conv, user, "tool", "2 disputes", principal_subject="cust-1",
                                       tool_calls=[{"name": "list_disputes", "arguments": {"q": "bvn 22123456789"}}],
                                       retrieved_ids=["doc-1"], metadata={"latency_ms": 12})
    await logger.log_prompt("credit_coach", "3", "Help {name}", {"name": f"Ada {PHONE}"}, user_id=user,
                            principal_subject="cust-1")
    await logger.log_feedback(conv, user, score=1, label="helpful", comment=f"ring {PHONE}",
                              principal_subject="cust-1")
    await logger.log_prediction("score-estimator", "1.2", user, {"note": PHONE, "util": 0.4}, {"score": 640}, 12.5)
    stats = await logger.stop()
    assert stats.written == 5 and stats.buffered == 0 and stats.dropped == 0
    turns = await db.llm_conversations.find({"conversation_id": conv}).sort("created_at", 1).to_list(10)
    assert [t["observation"] for t in turns] == ["turn", "tool_call"]
    everything = [*turns, *(await db.prompt_history.find({"user_id": user}).to_list(5)),
                  *(await db.feedback_signals.find({"user_id": user}).to_list(5)),
                  *(await db.model_predictions.find({"user_id": user}).to_list(5))]
    assert len(everything) == 5
    assert PHONE not in repr(everything) and "22123456789" not in repr(everything)
    assert all(d["expires_at"] > d["created_at"] for d in turns)


@pytest.mark.parametrize("kwargs", [
    {"metadata": {"$where": "1"}},
    {"metadata": {"a": {"$function": "x"}}},
    {"metadata": {"dotted.key": 1}},
    {"metadata": {"blob": "x" * (600 * 1024)}},
    {"tool_calls": [{"name": "x", "arguments": {"$gt": ""}}]},
])
async def test_bad_records_rejected_with_clear_errors(db, kwargs, queue):
    logger = AILogger(db, queue=queue)
    with pytest.raises(InvalidData):
        await logger.log_conversation_turn(uid(), uid(), "user", "hi", principal_subject="p", **kwargs)
    assert logger.stats.buffered == 0 and await logger.queue.depth() == 0


async def test_records_given_together_are_all_queued_or_none(db, queue):
    """record_many checks every document before any is queued: one bad document keeps the others out too; good
    ones are committed together and written."""
    from stores.mongo.documents import ModelPrediction

    logger = AILogger(db, queue=queue)
    user = uid()

    def prediction(**extra):
        return (names.MODEL_PREDICTIONS, ModelPrediction, {"model": "m", "version": "1", "user_id": user,
                                                           "inputs": {}, "outputs": {}, "latency_ms": 1.0, **extra})

    with pytest.raises(InvalidData):
        await logger.record_many([prediction(), prediction(inputs={"$where": "1"})])
    assert logger.stats.buffered == 0 and await logger.queue.depth() == 0
    ids = await logger.record_many([prediction(), prediction()])
    assert all(ids) and len(set(ids)) == 2 and await logger.queue.depth() == 2
    assert await logger.flush(5)
    assert await db.model_predictions.count_documents({"user_id": user}) == 2


async def test_validation_errors(db, queue):
    logger = AILogger(db, queue=queue)
    with pytest.raises(InvalidData, match="user_id"):
        await logger.log_feedback(uid(), "nobody", score=1, label=None, comment=None, principal_subject="p")
    with pytest.raises(InvalidData, match="content"):
        await logger.log_conversation_turn(uid(), uid(), "user", "x" * 30_000, principal_subject="p")
    with pytest.raises(InvalidData, match="role"):
        await logger.log_conversation_turn(uid(), uid(), "root", "x", principal_subject="p")


async def test_full_queue_refuses_and_counts(db, queue):
    logger = AILogger(db, buffer_size=5, queue=queue)
    user = uid()
    ids = [await logger.log_prediction("m", "1", user, {}, {}, 1.0) for _ in range(7)]
    assert ids[-2:] == [None, None] and logger.stats.dropped == 2
    assert await logger.flush(5)
    assert logger.stats.written == 5
    assert await db.model_predictions.count_documents({"user_id": user}) == 5


async def test_retry_after_unknown_outcome_does_not_duplicate(db, queue):
    logger = AILogger(db, queue=queue)
    user = uid()
    rid = await logger.log_prediction("m", "1", user, {}, {}, 1.0)
    (queued,) = await logger.queue.peek(logger.target, 10)
    doc = bson.decode(queued.payload)
    await db.model_predictions.insert_one(doc)  # the "lost" acknowledgement: already on the server
    assert await logger.flush(5)
    assert logger.stats.written == 1 and logger.stats.failed == 0
    assert await db.model_predictions.count_documents({"_id": rid}) == 1


async def test_retention_job_deletes_expired_logs_only(db, queue):
    logger = AILogger(db, retention=timedelta(milliseconds=1), queue=queue)
    user = uid()
    await logger.log_conversation_turn(uid(), user, "user", "old", principal_subject="p")
    await logger.log_prompt("p", "1", "t", {}, user_id=user, principal_subject="p")
    await logger.log_feedback(uid(), user, score=1, label=None, comment=None, principal_subject="p")
    assert await logger.flush(5)
    import asyncio

    await asyncio.sleep(0.05)
    deleted = await purge_expired(db)
    assert deleted["llm_conversations"] >= 1 and deleted["prompt_history"] >= 1
    assert await db.llm_conversations.count_documents({"user_id": user}) == 0
    assert await db.prompt_history.count_documents({"user_id": user}) == 0
    assert await db.feedback_signals.count_documents({"user_id": user}) == 1  # feedback never expires


@pytest.mark.needs_feature("ttl_index")
async def test_server_ttl_index_declared(db):
    info = await db.llm_conversations.index_information()
    assert info["ttl_expires_at"]["expireAfterSeconds"] == 0


async def test_a_record_the_server_refuses_is_dropped_with_its_reason_not_retried(db, queue):
    """FerretDB refuses the whole insert command for a reserved collection name (a non-bulk
    OperationFailure): the refused record is dropped and counted, the good ones around it are written."""
    logger = AILogger(db, max_retry_delay=0.05, queue=queue)
    user = uid()
    before = await logger.log_prediction("m", "1", user, {}, {}, 1.0)
    refused = {"_id": "refused-1", "user_id": user}
    await logger._put("_ferretdb_refused", refused)  # the server answers InvalidNamespace (73)
    after = await logger.log_prediction("m", "1", user, {"n": 2}, {}, 1.0)
    assert await logger.flush(30), logger.stats
    stats = await logger.stop()
    assert stats.written == 2 and stats.failed == 1 and stats.rejected == {"invalid_namespace": 1}
    assert stats.buffered == 0 and stats.retries == 0
    assert {d["_id"] async for d in db.model_predictions.find({"user_id": user})} == {before, after}


async def test_refused_documents_inside_a_batch_are_dropped_others_written(db, queue):
    logger = AILogger(db, queue=queue)
    user = uid()
    good = await logger.log_prediction("m", "1", user, {}, {}, 1.0)
    await logger._put(names.MODEL_PREDICTIONS, {"_id": ["not", "an", "id"], "user_id": user})
    await logger._put(names.MODEL_PREDICTIONS, {"_id": "inf", "user_id": user, "x": float("inf")})
    assert await logger.flush(30), logger.stats
    assert logger.stats.written == 1 and logger.stats.rejected == {"invalid_document": 2}
    assert await db.model_predictions.count_documents({"user_id": user}) == 1
    assert (await db.model_predictions.find_one({"user_id": user}))["_id"] == good


async def test_non_finite_numbers_are_refused_at_the_api(db, queue):
    """FerretDB closes the connection on NaN, which would look like an outage and be retried forever."""
    logger = AILogger(db, queue=queue)
    with pytest.raises(InvalidData, match="non-finite"):
        await logger.log_prediction("m", "1", uid(), {"x": float("nan")}, {}, 1.0)
    assert logger.stats.buffered == 0


def test_error_classification():
    """Only refusals of the data are permanent; FerretDB's backend-down answer (code 1) is an outage."""
    from bson.errors import InvalidDocument
    from pymongo.errors import AutoReconnect, DocumentTooLarge, NotPrimaryError, OperationFailure

    from stores.mongo.ai_logging import classify
    from stores.mongo.errors import is_outage

    assert classify(AutoReconnect("down")) is None and is_outage(AutoReconnect("down"))
    assert classify(NotPrimaryError("stepped down")) is None
    assert classify(OperationFailure("timeout", code=50)) is None
    assert classify(OperationFailure("shutting down", code=91)) is None
    backend_down = OperationFailure("dial tcp 127.0.0.1:5432: connection refused", code=1)
    assert classify(backend_down) is None and is_outage(backend_down)
    assert classify(OperationFailure("x", code=121)) == "validation" and not is_outage(OperationFailure("x", code=121))
    assert classify(OperationFailure("x", code=10334)) == "too_large"
    assert classify(DocumentTooLarge("big")) == "too_large"
    assert classify(InvalidDocument("bad")) == "invalid_document"
    unknown = OperationFailure("x", code=12345)
    assert classify(unknown) is None and not is_outage(unknown)  # retried up to max_attempts, then dropped


async def test_records_of_a_user_erased_while_queued_are_dropped_on_drain(db, queue):
    """A record committed to the local queue before its user was erased (here: the lookup says so once the
    record is queued) is dropped when it drains, counted as `user_erased`; the others' records are written."""
    erased: set[str] = set()
    logger = AILogger(db, redactor=redactor, queue=queue, erased=lambda ids: [u for u in ids if u in erased])
    gone, kept, conv = uid(), uid(), uid()
    await logger.log_conversation_turn(conv, gone, "user", "hello", principal_subject="cust-1")
    await logger.log_feedback(conv, gone, score=1, label=None, comment=None, principal_subject="cust-1")
    await logger.log_conversation_turn(conv, kept, "user", "hello", principal_subject="cust-2")
    erased.add(gone)
    await logger.start()
    stats = await logger.stop()
    assert stats.rejected == {"user_erased": 2} and stats.written == 1 and stats.buffered == 0
    assert await db.llm_conversations.count_documents({"user_id": gone}) == 0
    assert await db.feedback_signals.count_documents({"user_id": gone}) == 0
    assert await db.llm_conversations.count_documents({"user_id": kept}) == 1


async def test_an_unanswering_erasure_lookup_keeps_the_records_queued(db, queue):
    """The key store not answering is an outage of the drain: nothing is written unchecked, nothing is lost."""
    def down(ids):
        raise ConnectionError("key store down")

    logger = AILogger(db, queue=queue, erased=down, max_retry_delay=0.05)
    await logger.log_conversation_turn(uid(), uid(), "user", "hello", principal_subject="cust-1")
    await logger.start()
    stats = await logger.stop(timeout=1.0)
    assert stats.written == 0 and stats.buffered == 1
