"""The tests' OpenTelemetry SDK: finished spans kept in memory, in the test process and in runrpc.

``tests.settings_otel`` installs it in a runrpc process, whose ``finished_spans``
probe returns them; a test installs it in its own process for client spans.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
_installed = False


def install() -> None:
    """Make this process's tracer provider one that keeps finished spans in ``exporter``."""
    global _installed
    if _installed:
        return
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _installed = True


def as_dict(span: ReadableSpan) -> dict[str, Any]:
    """Return what the tests look at in a span, in values a zerorpc reply can carry."""
    context = span.get_span_context()
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "description": span.status.description,
    }


def finished_spans() -> list[dict[str, Any]]:
    return [as_dict(span) for span in exporter.get_finished_spans()]
