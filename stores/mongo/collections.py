"""Collection names, `$jsonSchema` validators and index declarations; `ensure_schema(db)` applies them.

Everything is idempotent: collections are created when missing, indexes with the same name and
keys are left alone. Features the server lacks (validators, TTL) are detected from the server's
answer (`NotImplemented`, code 238) and recorded in the returned `SchemaReport`; the adapter then
validates with pydantic (always) and the retention job deletes expired documents.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import CollectionInvalid, OperationFailure

from stores.mongo import documents as d
from stores.mongo import trace_documents as td

NOT_IMPLEMENTED = 238

# names ----------------------------------------------------------------------------------------
CREDIT_REPORTS = "credit_reports"
SCORE_HISTORY = "score_history"
DISPUTE_CASES = "dispute_cases"
ACTION_PLANS = "action_plans"
BUREAU_RESPONSES = "bureau_responses"
CREDIT_FACTORS = "credit_factors"
LLM_CONVERSATIONS = "llm_conversations"
EMBEDDINGS = "embeddings"
PROMPT_HISTORY = "prompt_history"
MODEL_PREDICTIONS = "model_predictions"
FEEDBACK_SIGNALS = "feedback_signals"
TRAINING_DATA = "training_data"
OUTBOX = "outbox_events"
WRITE_CLAIMS = "write_claims"
CDC_CHECKPOINTS = "cdc_checkpoints"
LOAD_PROGRESS = "load_progress"
CONVERSATION_OWNERS = "conversation_owners"
# AI traces (traces engineer): traces, their observations, prompt versions
TRACES = "traces"
TRACE_OBSERVATIONS = "trace_observations"
PROMPT_VERSIONS = "prompt_versions"
TRAINING_OPTOUTS = "training_optouts"


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection holds and how it is indexed.

    `ttl_field`: a date field after which a document expires (TTL index with expireAfterSeconds=0,
    or the retention job where the server does not enforce TTL). `shard_key`: None = unsharded.
    `obsolete_indexes`: dropped by `ensure_schema` where they exist. `pushdown`: the fields the
    repositories filter on by equality; on FerretDB's PostgreSQL backend each gets an index of the SQL
    shape FerretDB pushes them down as (`stores.mongo.pushdown`), since its own btree indexes cannot serve it.
    `ranges`: fields the background jobs read by range or order (`stores.mongo.backend_keyset.range`) that no
    declared index leads with; on FerretDB's PostgreSQL backend each gets a btree on `(_jsonb -> 'f')`, built
    CONCURRENTLY by `kredete mongo ensure-indexes` (a Mongo index would make FerretDB build it with a plain
    CREATE INDEX, which holds every write to the collection for the whole build).
    """

    name: str
    model: type[BaseModel] | None
    indexes: tuple[IndexModel, ...]
    ttl_field: str | None = None
    shard_key: dict[str, int] | None = field(default_factory=lambda: {"user_id": 1})
    obsolete_indexes: tuple[str, ...] = ()
    pushdown: tuple[str, ...] = ("user_id",)
    ranges: tuple[str, ...] = ()


def _ix(name: str, *keys: tuple[str, int], unique: bool = False) -> IndexModel:
    return IndexModel(list(keys), name=name, unique=unique)


U, A, D = "user_id", ASCENDING, DESCENDING

SPECS: tuple[CollectionSpec, ...] = (
    CollectionSpec(CREDIT_REPORTS, d.CreditReport, (
        _ix("uniq_user_bureau_version", (U, A), ("bureau", A), ("version", A), unique=True),
        _ix("user_validfrom", (U, A), ("valid_from", D), ("version", D)),
        _ix("user_bureau_validfrom", (U, A), ("bureau", A), ("valid_from", D)),
        _ix("created_at", ("created_at", D)),
    )),
    CollectionSpec(SCORE_HISTORY, d.ScorePoint, (
        _ix("uniq_user_bureau_model_asof", (U, A), ("bureau", A), ("score_model", A), ("as_of", A), unique=True),
        _ix("user_asof", (U, A), ("as_of", D)),
    )),
    CollectionSpec(DISPUTE_CASES, d.Dispute, (
        _ix("user_updated", (U, A), ("updated_at", D), ("_id", D)),
        _ix("user_status_updated", (U, A), ("status", A), ("updated_at", D), ("_id", D)),
        _ix("status_updated", ("status", A), ("updated_at", D), ("_id", D)),
        _ix("updated", ("updated_at", D), ("_id", D)),
        _ix("user_report", (U, A), ("report_id", A)),
    ), pushdown=(U, "_id")),  # `_id`: service-side transitions address a case by id alone
    CollectionSpec(ACTION_PLANS, d.ActionPlan, (
        _ix("uniq_user_version", (U, A), ("version", A), unique=True),
        _ix("user_created", (U, A), ("created_at", D)),
    ), ranges=("created_at",)),  # the outbox reconciliation's window (`cdc.Outbox.reconcile`)
    CollectionSpec(BUREAU_RESPONSES, d.BureauResponse, (
        _ix("user_dispute_received", (U, A), ("dispute_id", A), ("received_at", D)),
        _ix("dispute_received", ("dispute_id", A), ("received_at", D)),
    )),
    CollectionSpec(CREDIT_FACTORS, d.CreditFactor, (
        _ix("user_report_factor", (U, A), ("report_id", A), ("factor", A), unique=True),
        _ix("user_asof", (U, A), ("as_of", D)),
    )),
    CollectionSpec(LLM_CONVERSATIONS, d.ConversationTurn, (
        _ix("user_conversation_created", (U, A), ("conversation_id", A), ("created_at", A)),
        _ix("user_created", (U, A), ("created_at", D)),
        _ix("principal_created", ("principal_subject", A), ("created_at", D)),
    ), ttl_field="expires_at", pushdown=(U, "_id")),  # `_id`: the retention job deletes expired turns by id
    CollectionSpec(EMBEDDINGS, d.EmbeddingRecord, (
        _ix("uniq_user_source_chunk_model", (U, A), ("source_type", A), ("source_id", A), ("chunk_index", A),
            ("model", A), unique=True),
        _ix("vector_id", ("vector_id", A)),
    ), pushdown=("_id", "source_id")),  # upserts by record id; prunes and deletes by source
    CollectionSpec(PROMPT_HISTORY, d.PromptRecord, (
        _ix("user_created", (U, A), ("created_at", D)),
        _ix("name_version_created", ("name", A), ("version", A), ("created_at", D)),
    ), ttl_field="expires_at", pushdown=(U, "_id")),
    # Age-based retention (`kredete retention`, two years) finds old predictions and feedback by `created_at`
    # and deletes them one by one by `_id` (`stores.mongo.retention.purge_older`).
    CollectionSpec(MODEL_PREDICTIONS, d.ModelPrediction, (
        _ix("user_created", (U, A), ("created_at", D)),
        _ix("model_version_created", ("model", A), ("version", A), ("created_at", D)),
    ), pushdown=(U, "_id"), ranges=("created_at",)),
    CollectionSpec(FEEDBACK_SIGNALS, d.FeedbackSignal, (
        _ix("user_conversation", (U, A), ("conversation_id", A), ("created_at", D)),
        _ix("label_created", ("label", A), ("created_at", D)),
        _ix("conversation_created", ("conversation_id", A), ("created_at", D)),
        _ix("created", ("created_at", D)),
    ), pushdown=(U, "_id")),
    CollectionSpec(TRAINING_DATA, d.TrainingExample, (
        _ix("user_dataset", (U, A), ("dataset", A), ("created_at", D)),
        _ix("dataset_split", ("dataset", A), ("split", A)),
    )),
    # No TTL: events live until every registered consumer has passed them (`cdc.Outbox.prune`); a TTL
    # index from an older schema would delete unread events, so it is dropped.
    CollectionSpec(OUTBOX, None, (
        _ix("uniq_seq", ("seq", A), unique=True),
        _ix("topic_seq", ("topic", A), ("seq", A)),
        _ix("document_seq", ("document_id", A), ("seq", A)),
    ), shard_key=None, obsolete_indexes=("ttl_expires_at", "expiry_expires_at"), pushdown=("_id",),
        ranges=("at",)),  # `prune`'s events older than the retention: the few not pruned yet, not the whole log
    CollectionSpec(WRITE_CLAIMS, None, (), ttl_field="expires_at", shard_key=None, pushdown=("_id",)),
    CollectionSpec(CDC_CHECKPOINTS, None, (), shard_key=None, pushdown=()),
    # Checkpoints of resumable bulk loads (`stores.mongo.bulk.LoadProgress`): a few hundred markers per load.
    CollectionSpec(LOAD_PROGRESS, None, (_ix("load", ("load", A)),), shard_key=None, pushdown=("load",)),
    # Looked up by `_id` (the conversation id) only; one small document per conversation.
    CollectionSpec(CONVERSATION_OWNERS, None, (), shard_key=None, pushdown=("_id",)),
    # AI traces: a trace per conversation (or MCP session), observations in a tree, prompt templates by version.
    CollectionSpec(TRACES, td.TraceDoc, (
        _ix("user_created", (U, A), ("created_at", D)),
        _ix("created", ("created_at", D)),
    ), ttl_field="expires_at", pushdown=(U, "_id")),
    CollectionSpec(TRACE_OBSERVATIONS, td.Observation, (
        _ix("user_trace_started", (U, A), ("trace_id", A), ("started_at", A)),
        _ix("trace_started", ("trace_id", A), ("started_at", A)),
        _ix("started", ("started_at", D)),
    ), ttl_field="expires_at", pushdown=(U, "trace_id", "_id")),
    CollectionSpec(PROMPT_VERSIONS, td.PromptVersionDoc, (
        _ix("name_version", ("name", A), ("version", A)),
    ), shard_key=None, pushdown=("_id",)),
    # Customers who opted out of training use (read by `kredete training export`, looked up by `_id`).
    CollectionSpec(TRAINING_OPTOUTS, td.TrainingOptOut, (), pushdown=("_id",)),
)
SPEC_BY_NAME = {s.name: s for s in SPECS}
TTL_COLLECTIONS = tuple(s.name for s in SPECS if s.ttl_field)


# validators -----------------------------------------------------------------------------------
def _bson_types(tp: Any) -> list[str] | None:
    """Map a Python annotation to `$jsonSchema` bsonTypes; None when it cannot be expressed simply."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _bson_types(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        out: list[str] = []
        for arg in typing.get_args(tp):
            sub = _bson_types(arg)
            if sub is None:
                return None
            out += [s for s in sub if s not in out]
        return out
    if origin is typing.Literal:
        return None
    if origin in (list, tuple, set):
        return ["array"]
    if origin is dict:
        return ["object"]
    if tp is type(None):
        return ["null"]
    if isinstance(tp, type):
        if issubclass(tp, Enum) or issubclass(tp, str):
            return ["string"]
        if issubclass(tp, bool):
            return ["bool"]
        if issubclass(tp, int):
            return ["int", "long"]
        if issubclass(tp, float):
            return ["double", "int", "long"]
        if issubclass(tp, datetime):
            return ["date"]
        if issubclass(tp, date):
            return ["string"]
        if issubclass(tp, BaseModel):
            return ["object"]
    return None


def validator_for(model: type[BaseModel]) -> dict[str, Any]:
    """A `$jsonSchema` validator derived from a pydantic model: required fields and their BSON types.

    Fields whose values the repository encrypts are left untyped (ciphertext is binary or string).
    """
    required: list[str] = []
    props: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if info.is_required():
            required.append(key)
        types_ = _bson_types(info.annotation)
        if types_:
            props[key] = {"bsonType": types_ if len(types_) > 1 else types_[0]}
    if "user_id" in props:
        props["user_id"]["pattern"] = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
    return {"$jsonSchema": {"bsonType": "object", "required": required, "properties": props}}


# ensure_schema --------------------------------------------------------------------------------
@dataclass
class SchemaReport:
    created: list[str] = field(default_factory=list)
    indexes: dict[str, list[str]] = field(default_factory=dict)
    validators: bool | None = None  # True: server enforces $jsonSchema; False: pydantic only
    ttl: bool | None = None  # True: server TTL indexes; False: retention job
    notes: list[str] = field(default_factory=list)


def _not_implemented(exc: OperationFailure) -> bool:
    return exc.code == NOT_IMPLEMENTED or "not implemented" in str(exc).lower()


async def _create(db: AsyncDatabase, spec: CollectionSpec, report: SchemaReport) -> None:
    existing = set(await db.list_collection_names())
    if spec.name in existing:
        if spec.model is not None and report.validators is not False:
            try:
                await db.command("collMod", spec.name, validator=validator_for(spec.model),
                                 validationLevel="strict", validationAction="error")
                report.validators = True
            except OperationFailure as exc:
                if not _not_implemented(exc):
                    raise
                report.validators = bool(report.validators)
        return
    if spec.model is not None and report.validators is not False:
        try:
            await db.create_collection(spec.name, validator=validator_for(spec.model),
                                       validationLevel="strict", validationAction="error")
            report.validators = True
            report.created.append(spec.name)
            return
        except CollectionInvalid:
            return
        except OperationFailure as exc:
            if not _not_implemented(exc):
                raise
            report.validators = False
            report.notes.append("server lacks $jsonSchema validators: documents are validated by pydantic only")
    try:
        await db.create_collection(spec.name)
        report.created.append(spec.name)
    except CollectionInvalid:
        pass
    except OperationFailure as exc:
        if exc.code != 48:  # NamespaceExists (a concurrent ensure_schema)
            raise


async def _indexes(db: AsyncDatabase, spec: CollectionSpec, report: SchemaReport) -> None:
    coll = db[spec.name]
    models = list(spec.indexes)
    names = [m.document["name"] for m in models]
    if spec.ttl_field:
        ttl_name = f"ttl_{spec.ttl_field}"
        if report.ttl is not False:
            try:
                if ttl_name not in set((await coll.index_information()).keys()):
                    await coll.create_indexes([IndexModel([(spec.ttl_field, ASCENDING)], name=ttl_name,
                                                          expireAfterSeconds=0)])
                report.ttl = True
            except OperationFailure as exc:
                if not _not_implemented(exc):
                    raise
                report.ttl = False
                report.notes.append("server lacks TTL indexes: `kredete mongo retention` deletes expired documents")
        if report.ttl is False:
            # plain index so the retention job's range delete is cheap
            models.append(IndexModel([(spec.ttl_field, ASCENDING)], name=f"expiry_{spec.ttl_field}"))
            names.append(f"expiry_{spec.ttl_field}")
        else:
            names.append(ttl_name)
    # Only missing indexes, one per command: FerretDB 1.24 drops the connection (a server-side panic)
    # when one createIndexes command re-declares several existing indexes.
    existing = set((await coll.index_information()).keys())
    for name in spec.obsolete_indexes:
        if name in existing:
            await coll.drop_index(name)
            report.notes.append(f"{spec.name}: dropped obsolete index {name}")
    for model in models:
        if model.document["name"] not in existing:
            await coll.create_indexes([model])
    report.indexes[spec.name] = names


async def ensure_schema(db: AsyncDatabase) -> SchemaReport:
    """Create every collection (with a validator where supported) and every index; idempotent."""
    report = SchemaReport()
    for spec in SPECS:
        await _create(db, spec, report)
        await _indexes(db, spec, report)
    report.notes = list(dict.fromkeys(report.notes))
    return report


def shard_commands(db_name: str = "kredete") -> list[str]:
    """mongosh commands that shard every user-data collection on `user_id` (range key: UUIDs spread evenly,
    and every unique index has it as prefix, which a sharded unique index requires)."""
    lines = [f'sh.enableSharding("{db_name}")']
    for spec in SPECS:
        if spec.shard_key:
            key = ", ".join(f"{k}: {v}" for k, v in spec.shard_key.items())
            lines.append(f'sh.shardCollection("{db_name}.{spec.name}", {{ {key} }})')
        else:
            lines.append(f"// {db_name}.{spec.name}: unsharded (small, global ordering; lives on the primary shard)")
    return lines
