"""telegen.pipeline.BoundedQueue: bounds, overflow policies, counters, batch timeouts."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telegen.pipeline import BoundedQueue


def _invariant(q: BoundedQueue[object]) -> None:
    assert q.produced == len(q) + q.taken + q.dropped_total


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BoundedQueue("q", 0)


def test_drop_newest_refuses_incoming_items() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 3, "drop_newest")
    assert q.put_many(range(5)) == 3
    assert not q.put(99)
    assert q.get_batch(10) == [0, 1, 2]
    assert q.dropped == {"queue_full": 3}
    assert q.produced == 6
    _invariant(q)


def test_drop_oldest_evicts_the_head() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 3, "drop_oldest")
    assert q.put_many(range(5)) == 5
    assert q.put(5)
    assert q.get_batch(10) == [3, 4, 5]
    assert q.dropped == {"queue_full": 3}
    _invariant(q)


def test_byte_bound_drop_newest() -> None:
    q: BoundedQueue[bytes] = BoundedQueue("q", 100, "drop_newest", max_bytes=10, cost=len)
    assert q.put(b"aaaa")
    assert q.put(b"bbbb")
    assert not q.put(b"ccc")  # 8 + 3 > 10
    assert q.put(b"dd")  # exactly 10
    assert q.size_bytes == 10
    assert q.get_batch(1) == [b"aaaa"]
    assert q.size_bytes == 6
    _invariant(q)


def test_byte_bound_drop_oldest_evicts_until_it_fits() -> None:
    q: BoundedQueue[bytes] = BoundedQueue("q", 100, "drop_oldest", max_bytes=10, cost=len)
    q.put_many([b"aaa", b"bbb", b"ccc"])
    assert q.put(b"eeeeeee")  # 7 bytes: evicts aaa and bbb
    assert q.get_batch(10) == [b"ccc", b"eeeeeee"]
    assert q.dropped == {"queue_full": 2}
    _invariant(q)


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_item_larger_than_byte_bound_is_dropped_as_too_large(policy: str) -> None:
    q: BoundedQueue[bytes] = BoundedQueue("q", 10, policy, max_bytes=4, cost=len)  # type: ignore[arg-type]
    q.put(b"ok")
    assert not q.put(b"too big")
    assert q.dropped == {"too_large": 1}
    assert q.get_batch(5) == [b"ok"]  # nothing evicted for an item that could never fit
    _invariant(q)


def test_stats_snapshot() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 2)
    q.put_many([1, 2, 3])
    q.get_batch(1)
    assert q.stats() == {"size": 1, "capacity": 2, "bytes": 0, "produced": 3, "taken": 1,
                         "dropped": {"queue_full": 1}}


def test_get_batch_respects_max_items_and_order() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 100)
    q.put_many(range(10))
    assert q.get_batch(4) == [0, 1, 2, 3]
    assert q.get_batch(0) == []
    assert q.get_batch(100) == [4, 5, 6, 7, 8, 9]
    assert q.taken == 10


def test_get_batch_without_timeout_returns_at_once() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 1)
    start = time.monotonic()
    assert q.get_batch(5) == []
    assert q.get_batch(5, timeout=None) == []
    assert time.monotonic() - start < 0.05


def test_get_batch_timeout_expires_empty() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 1)
    start = time.monotonic()
    assert q.get_batch(5, timeout=0.1) == []
    elapsed = time.monotonic() - start
    assert 0.09 <= elapsed < 1.0


def test_get_batch_wakes_when_an_item_arrives() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 10)
    timer = threading.Timer(0.05, q.put, args=(7,))
    timer.start()
    start = time.monotonic()
    try:
        assert q.get_batch(5, timeout=5) == [7]
    finally:
        timer.join()
    assert time.monotonic() - start < 2


def test_wait_nonempty() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 10)
    assert not q.wait_nonempty(0.01)
    q.put(1)
    assert q.wait_nonempty(0.01)


def test_record_drop_counts_by_reason() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 10)
    q.record_drop("export_permanent", 3)
    assert q.dropped == {"export_permanent": 3}


def test_concurrent_producers_and_consumer_keep_the_invariant() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 50, "drop_oldest")
    got: list[int] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set() or len(q):
            got.extend(q.get_batch(7, timeout=0.01))

    producers = [threading.Thread(target=lambda: [q.put(i) for i in range(2000)]) for _ in range(4)]
    consumer = threading.Thread(target=consume)
    consumer.start()
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    stop.set()
    consumer.join()
    assert q.produced == 8000
    assert len(got) == q.taken
    _invariant(q)


_ops = st.lists(st.one_of(
    st.tuples(st.just("put"), st.lists(st.binary(max_size=12), max_size=6)),
    st.tuples(st.just("get"), st.integers(0, 8)),
), max_size=40)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(ops=_ops, capacity=st.integers(1, 6), max_bytes=st.sampled_from([0, 8, 20]),
       policy=st.sampled_from(["drop_newest", "drop_oldest"]))
def test_counters_always_balance(ops: list[tuple[str, object]], capacity: int, max_bytes: int,
                                 policy: str) -> None:
    q: BoundedQueue[bytes] = BoundedQueue("q", capacity, policy, max_bytes=max_bytes,  # type: ignore[arg-type]
                                          cost=len)
    for op, arg in ops:
        if op == "put":
            q.put_many(arg)  # type: ignore[arg-type]
        else:
            q.get_batch(arg)  # type: ignore[arg-type]
        _invariant(q)
        assert len(q) <= capacity
        assert not max_bytes or q.size_bytes <= max_bytes
        assert q.size_bytes == sum(len(i) for i, _ in q._items)


def test_uncosted_batch_put_keeps_order_and_counts_the_refused() -> None:
    q: BoundedQueue[int] = BoundedQueue("records", 5)
    assert q.put_many(range(3)) == 3  # not a list: taken as one
    assert q.put_many([3, 4, 5, 6, 7]) == 2
    assert q.produced == 8 and q.dropped["queue_full"] == 3
    assert q.get_batch(10) == [0, 1, 2, 3, 4]
    assert q.produced == len(q) + q.taken + q.dropped_total


def test_take_deepest_reports_the_backlog_between_calls() -> None:
    q: BoundedQueue[int] = BoundedQueue("q", 100)
    q.put_many(list(range(30)))
    q.get_batch(25)
    q.put_many(list(range(10)))  # 15 waiting now; 30 at the deepest
    assert q.take_deepest() == 30
    assert q.take_deepest() == 15  # what still waits is where the next window starts
    q.get_batch(100)
    q.put(1)
    assert q.take_deepest() == 15
    assert q.take_deepest() == 1


def test_notify_every_calls_back_each_time_that_many_more_were_offered() -> None:
    q: BoundedQueue[bytes] = BoundedQueue("records", 10)
    calls: list[int] = []
    q.notify_every(4, lambda: calls.append(q.produced))
    q.put_many([b"r"] * 3)
    assert calls == []
    q.put_many([b"r"] * 3)  # offered, refused or not: a surge is what arrived
    assert calls == [6]
    q.put_many([b"r"] * 20)  # past the capacity: refused ones count too
    assert calls == [6, 26] and q.dropped["queue_full"] > 0
