"""Optional OTLP export of stored observations as OpenTelemetry spans (off unless an endpoint is configured).

A trace id becomes the span trace id (its SHA-256, 128 bits), an observation id the span id (64 bits), and the
parent link the span parent, so a collector shows the same tree as `kredete traces show`. The provider is our
own (never the global one): the SDK's own server spans are not exported through it. Spans carry the redacted
attributes of `guards.trace_attributes` only.
"""

from __future__ import annotations

import contextvars
import hashlib
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from guards.trace_attributes import attributes

_next_span_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("kredete_next_span_id", default=None)


def _int(value: str, bits: int) -> int:
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[: bits // 8], "big") or 1


class _FromIds(IdGenerator):
    """Span ids from observation ids (so parents resolve); trace ids come from the parent context."""

    def generate_span_id(self) -> int:
        return _next_span_id.get() or _int(datetime.now().isoformat(), 64)

    def generate_trace_id(self) -> int:  # only reached without a parent context, which we always give
        return _int(datetime.now().isoformat(), 128)


def _ns(value: Any) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    return int(datetime.fromisoformat(str(value)).timestamp() * 1e9)


class OtlpExporter:
    def __init__(self, endpoint: str | None = None, *, exporter: SpanExporter | None = None,
                 service_name: str = "kredete-mcp") -> None:
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter(endpoint=endpoint)
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}),
                                       id_generator=_FromIds())
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer = self.provider.get_tracer("kredete.traces")

    def export(self, obs: dict[str, Any]) -> None:
        """One observation document as a finished span (queued in the batch processor; never blocks)."""
        trace_id = _int(obs["trace_id"], 128)
        parent_span = _int(obs["parent_id"] or f"root:{obs['trace_id']}", 64)
        parent = trace.set_span_in_context(NonRecordingSpan(SpanContext(
            trace_id=trace_id, span_id=parent_span, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))))
        start = _ns(obs["started_at"])
        end = start + int(float(obs.get("latency_ms") or 0) * 1e6)
        token = _next_span_id.set(_int(obs["_id"], 64))
        try:
            span = self.tracer.start_span(f"{obs['kind']} {obs['name']}", context=parent, kind=SpanKind.INTERNAL,
                                          attributes=attributes(obs), start_time=start)
        finally:
            _next_span_id.reset(token)
        if obs.get("status") in ("denied", "error", "rate_limited"):
            span.set_status(trace.Status(trace.StatusCode.ERROR, obs["status"]))
        span.end(end_time=end)

    def shutdown(self) -> None:
        self.provider.shutdown()
