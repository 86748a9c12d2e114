"""Wiring the AI traces of one server process: the recorder on the AI logger, conversation owners, prompt
versions and the optional OTLP export (`KREDETE_OTLP_TRACES_ENDPOINT`)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from agent_tools.prompts import PROMPTS, catalog
from guards.tracing import TraceRecorder, watch_logger
from stores.mongo import collections as names
from stores.mongo.trace_documents import PromptVersionDoc

log = logging.getLogger("kredete.traces")


async def register_prompt_versions(sink: Any) -> None:
    """Each served template at its version (`<name>@<version>`; an existing one is left as it is)."""
    for p in PROMPTS:
        await sink.record(names.PROMPT_VERSIONS, PromptVersionDoc, {
            "_id": f"{p.name}@{p.label}", "name": p.name, "version": p.label, "template": p.template,
            "template_sha256": p.sha256})


async def start_recorder(runtime: Any) -> TraceRecorder:
    s = runtime.settings
    exporter = None
    if s.otlp_traces_endpoint:
        from guards.trace_export import OtlpExporter

        exporter = OtlpExporter(s.otlp_traces_endpoint)
    recorder = TraceRecorder(
        runtime.ai_logger, digest_key=s.token_signing_key.get_secret_value().encode(),
        owners=getattr(runtime.repos, "conversations", None), retention=timedelta(days=s.log_retention_days),
        queue_size=s.trace_queue_size, max_output_bytes=s.trace_max_output_bytes, transport=runtime.transport,
        exporter=exporter)
    recorder.prompts = catalog()
    try:
        await register_prompt_versions(runtime.ai_logger)
    except Exception as exc:  # never stops the server: the versions are also in prompt_history
        log.warning("prompt versions not registered: %s", type(exc).__name__)
    watch_logger(runtime.ai_logger)
    runtime.gate.tracer = recorder
    return await recorder.start()
