"""RetryInfo in grpc-status-details-bin, decoded without googleapis-common-protos."""

from __future__ import annotations

from telegen.export.rpc_status import STATUS_DETAILS_KEY, encode_status, retry_delay


def test_round_trip_delay() -> None:
    trailers = [("other", "x"), (STATUS_DETAILS_KEY, encode_status(8, "slow down", 1.25))]
    assert retry_delay(trailers) == 1.25


def test_no_retry_info_or_garbage_is_none() -> None:
    assert retry_delay([(STATUS_DETAILS_KEY, encode_status(8, "no info"))]) is None
    assert retry_delay([(STATUS_DETAILS_KEY, b"\xff\xff\x00garbage")]) is None
    assert retry_delay(None) is None
