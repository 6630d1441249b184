"""google.rpc.Status / RetryInfo in the `grpc-status-details-bin` trailer, without googleapis-common-protos.

The two messages are declared here from their public schema (google/rpc/status.proto,
google/rpc/error_details.proto) in a private descriptor pool, so installing
googleapis-common-protos later cannot clash with them in the default pool.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, duration_pb2, message_factory

STATUS_DETAILS_KEY = "grpc-status-details-bin"
RETRY_INFO_TYPE_URL = "type.googleapis.com/google.rpc.RetryInfo"


def _build() -> tuple[Any, Any]:
    pool = descriptor_pool.DescriptorPool()
    for dep in (any_pb2, duration_pb2):
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(dep.DESCRIPTOR.serialized_pb))
    fdp = descriptor_pb2.FileDescriptorProto(
        name="telegen/google_rpc_subset.proto", package="google.rpc", syntax="proto3",
        dependency=["google/protobuf/any.proto", "google/protobuf/duration.proto"],
    )
    f = descriptor_pb2.FieldDescriptorProto
    status = fdp.message_type.add(name="Status")
    status.field.add(name="code", number=1, type=f.TYPE_INT32, label=f.LABEL_OPTIONAL)
    status.field.add(name="message", number=2, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
    status.field.add(name="details", number=3, type=f.TYPE_MESSAGE, label=f.LABEL_REPEATED,
                     type_name=".google.protobuf.Any")
    retry = fdp.message_type.add(name="RetryInfo")
    retry.field.add(name="retry_delay", number=1, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL,
                    type_name=".google.protobuf.Duration")
    pool.Add(fdp)
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.Status")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("google.rpc.RetryInfo")))


Status, RetryInfo = _build()


def encode_status(code: int, message: str, retry_delay: float | None = None) -> bytes:
    """Serialized google.rpc.Status, with a RetryInfo detail when retry_delay is given (test receivers)."""
    status = Status(code=code, message=message)
    if retry_delay is not None:
        info = RetryInfo()
        info.retry_delay.seconds = int(retry_delay)
        info.retry_delay.nanos = round((retry_delay - int(retry_delay)) * 1e9)
        status.details.add(type_url=RETRY_INFO_TYPE_URL, value=info.SerializeToString())
    return bytes(status.SerializeToString())


def retry_delay(trailers: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    """The RetryInfo delay in seconds carried by the trailing metadata, or None when there is none."""
    for key, value in trailers or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        try:
            status = Status.FromString(value)
            for detail in status.details:
                if detail.type_url.endswith("/google.rpc.RetryInfo"):
                    info = RetryInfo.FromString(detail.value)
                    delay: float = info.retry_delay.seconds + info.retry_delay.nanos / 1e9
                    return max(0.0, delay)
        except Exception:  # a malformed trailer means "no RetryInfo", never a crash
            return None
    return None
