"""A reference OTLP/gRPC receiver for tests, on the official opentelemetry-proto services, with faults.

    rx = OtlpReceiver().start()            # 127.0.0.1, ephemeral port; rx.endpoint == "127.0.0.1:PORT"
    rx.set_fault(Fault.unavailable(), times=2)   # the next 2 calls fail, then healthy again
    rx.wait_for_spans(10, timeout=5)
    rx.spans[0].span.name, rx.spans[0].resource["service.name"]
    rx.stop(); rx.start()                  # a restart on the same port ("refuse" while stopped)

Every call is recorded in `calls` (signal, gRPC code name, items, monotonic time, metadata),
including the failed ones, so tests can count attempts and measure the delays between them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from telegen.export.rpc_status import STATUS_DETAILS_KEY, encode_status


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def attrs_dict(attrs: Any) -> dict[str, Any]:
    return {kv.key: any_value(kv.value) for kv in attrs}


@dataclass(frozen=True)
class Fault:
    kind: str  # unavailable | resource_exhausted | invalid_argument | partial_success | slow
    retry_after: float | None = None  # resource_exhausted: RetryInfo delay (None: no RetryInfo)
    rejected: int = 0  # partial_success: how many items of each request are rejected
    delay: float = 0.0  # slow: seconds before answering

    @staticmethod
    def unavailable() -> Fault:
        return Fault("unavailable")

    @staticmethod
    def resource_exhausted(retry_after: float | None = None) -> Fault:
        return Fault("resource_exhausted", retry_after=retry_after)

    @staticmethod
    def invalid_argument() -> Fault:
        return Fault("invalid_argument")

    @staticmethod
    def partial_success(rejected: int) -> Fault:
        return Fault("partial_success", rejected=rejected)

    @staticmethod
    def slow(delay: float) -> Fault:
        return Fault("slow", delay=delay)


@dataclass
class Call:
    signal: str
    code: str
    items: int
    at: float  # time.monotonic() when the call arrived
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    """One span / log record / metric with the resource and scope it came under."""

    item: Any
    resource: dict[str, Any]
    scope_name: str
    scope_version: str

    @property
    def span(self) -> Any:
        return self.item


def _count(signal: str, request: Any) -> int:
    if signal == "traces":
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal == "logs":
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    total = 0
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                total += len(getattr(m, kind).data_points) if kind else 0
    return total


class OtlpReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 server_credentials: grpc.ServerCredentials | None = None) -> None:
        self.host, self.port = host, port
        self.credentials = server_credentials
        self.lock = threading.Condition()
        self.spans: list[Received] = []
        self.logs: list[Received] = []
        self.metrics: list[Received] = []
        self.calls: list[Call] = []
        self._fault: Fault | None = None
        self._fault_times: int | None = None
        self._fault_signal: str | None = None
        self._server: grpc.Server | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> OtlpReceiver:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=[("grpc.so_reuseport", 0)])
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_Traces(self), server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(_Logs(self), server)
        address = f"{self.host}:{self.port}"
        if self.credentials is not None:
            port = server.add_secure_port(address, self.credentials)
        else:
            port = server.add_insecure_port(address)
        if port == 0:
            raise RuntimeError(f"cannot bind {address}")
        self.port = port
        server.start()
        self._server = server
        return self

    def stop(self, grace: float | None = None) -> None:
        """Stop listening: clients now get 'connection refused' (the 'refuse' fault)."""
        if self._server is not None:
            self._server.stop(grace).wait()
            self._server = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------------
    def set_fault(self, fault: Fault | None, times: int | None = None, signal: str | None = None) -> None:
        """Inject `fault` into the next `times` calls (None: until cleared with set_fault(None)),
        of one signal ('traces', 'metrics', 'logs') or of all."""
        with self.lock:
            self._fault, self._fault_times, self._fault_signal = fault, times, signal

    def _next_fault(self, signal: str) -> Fault | None:
        with self.lock:
            fault = self._fault
            if self._fault_signal is not None and signal != self._fault_signal:
                return None
            if fault is not None and self._fault_times is not None:
                self._fault_times -= 1
                if self._fault_times <= 0:
                    self._fault, self._fault_times = None, None
            return fault

    # -- waiting -------------------------------------------------------------------------------
    def _wait(self, what: Callable[[], int], n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.lock:
            while what() < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.lock.wait(remaining)
            return True

    def wait_for_spans(self, n: int, timeout: float = 5.0) -> bool:
        return self._wait(lambda: len(self.spans), n, timeout)

    def wait_for_logs(self, n: int, timeout: float = 5.0) -> bool:
        return self._wait(lambda: len(self.logs), n, timeout)

    def wait_for_metric_points(self, n: int, timeout: float = 5.0) -> bool:
        return self._wait(self.metric_point_count, n, timeout)

    def wait_for_calls(self, n: int, timeout: float = 5.0) -> bool:
        return self._wait(lambda: len(self.calls), n, timeout)

    def metric_point_count(self) -> int:
        total = 0
        for rec in self.metrics:
            kind = rec.item.WhichOneof("data")
            total += len(getattr(rec.item, kind).data_points) if kind else 0
        return total

    def calls_for(self, signal: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.signal == signal]

    # -- handling ------------------------------------------------------------------------------
    def handle(self, signal: str, request: Any, context: grpc.ServicerContext, response: Any) -> Any:
        fault = self._next_fault(signal)
        items = _count(signal, request)
        metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
        code = "OK"
        if fault is not None and fault.kind != "slow" and fault.kind != "partial_success":
            code = {"unavailable": "UNAVAILABLE", "resource_exhausted": "RESOURCE_EXHAUSTED",
                    "invalid_argument": "INVALID_ARGUMENT"}[fault.kind]
        with self.lock:
            self.calls.append(Call(signal, code, items, time.monotonic(), metadata))
            self.lock.notify_all()
        if fault is not None:
            if fault.kind == "unavailable":
                context.abort(grpc.StatusCode.UNAVAILABLE, "injected: unavailable")
            if fault.kind == "resource_exhausted":
                if fault.retry_after is not None:
                    context.set_trailing_metadata([(STATUS_DETAILS_KEY, encode_status(
                        grpc.StatusCode.RESOURCE_EXHAUSTED.value[0], "slow down", fault.retry_after))])
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "injected: resource exhausted")
            if fault.kind == "invalid_argument":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "injected: invalid argument")
            if fault.kind == "slow":
                time.sleep(fault.delay)
                if not context.is_active():  # the client gave up: it will resend
                    with self.lock:
                        self.calls[-1] = Call(signal, "DEADLINE_EXCEEDED", items, self.calls[-1].at, metadata)
                    return response
        self._record(signal, request)
        if fault is not None and fault.kind == "partial_success":
            rejected = min(fault.rejected, items)
            field_name = {"traces": "rejected_spans", "metrics": "rejected_data_points",
                          "logs": "rejected_log_records"}[signal]
            setattr(response.partial_success, field_name, rejected)
            response.partial_success.error_message = "injected: partial success"
        return response

    def _record(self, signal: str, request: Any) -> None:
        out: list[Received] = []
        if signal == "traces":
            for rs in request.resource_spans:
                res = attrs_dict(rs.resource.attributes)
                for ss in rs.scope_spans:
                    out.extend(Received(s, res, ss.scope.name, ss.scope.version) for s in ss.spans)
        elif signal == "logs":
            for rl in request.resource_logs:
                res = attrs_dict(rl.resource.attributes)
                for sl in rl.scope_logs:
                    out.extend(Received(r, res, sl.scope.name, sl.scope.version) for r in sl.log_records)
        else:
            for rm in request.resource_metrics:
                res = attrs_dict(rm.resource.attributes)
                for sm in rm.scope_metrics:
                    out.extend(Received(m, res, sm.scope.name, sm.scope.version) for m in sm.metrics)
        with self.lock:
            {"traces": self.spans, "logs": self.logs, "metrics": self.metrics}[signal].extend(out)
            self.lock.notify_all()


class _Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, rx: OtlpReceiver) -> None:
        self.rx = rx

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.rx.handle("traces", request, context, trace_service_pb2.ExportTraceServiceResponse())


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, rx: OtlpReceiver) -> None:
        self.rx = rx

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.rx.handle("metrics", request, context, metrics_service_pb2.ExportMetricsServiceResponse())


class _Logs(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, rx: OtlpReceiver) -> None:
        self.rx = rx

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.rx.handle("logs", request, context, logs_service_pb2.ExportLogsServiceResponse())
