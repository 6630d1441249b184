"""Re-draw queued records at the kernel's current keep rate, before decode.

The governor cuts a flood in the kernel within 0.1 s, but what is already in the ring buffer
and the records queue was drawn at the old rate: 10k-35k records when `wrk` starts, a large
share of a second of agent CPU. Each record carries the keep rate it was drawn at (`sample_permille`); one
drawn at r while the kernel now keeps k < r is kept with probability k / r and re-weighted to
1000 / k: the same as if the kernel had drawn it at k, so RED histograms stay unbiased and span
work follows a cut at once. The draw hashes the trace id, so the two ends of a call that the
kernel linked (one trace id) are kept or dropped together.
"""

from __future__ import annotations

from telegen.capture.layouts import EVENT_HTTP_EXCHANGE, Layout

_NO_TRACE = bytes(16)


class RecordThinner:
    def __init__(self, layout: Layout) -> None:
        """`layout`: the http_exchange_event layout the records follow (the decoder's)."""
        offsets = layout.offsets()
        self._rate_at = offsets["sample_permille"]
        self._trace_at = offsets["trace_id"]
        self._start_at = offsets["start_ns"]
        self.thinned = 0  # records dropped here: shed after the kernel kept them

    def thin(self, batch: list[bytes], keep_permille: int) -> list[bytes]:
        """The records of `batch` a draw at `keep_permille` keeps (all of them at 1000), in order;
        records of another type or too short to hold the fields pass untouched (the decoder
        judges them)."""
        if keep_permille >= 1000 or not batch:
            return batch
        rate_at, trace_at, start_at = self._rate_at, self._trace_at, self._start_at
        shortest = trace_at + 16
        keep_bytes = keep_permille.to_bytes(2, "little")
        out: list[bytes] = []
        for rec in batch:
            if len(rec) < shortest or rec[0] != EVENT_HTTP_EXCHANGE:
                out.append(rec)
                continue
            drawn = rec[rate_at] | rec[rate_at + 1] << 8
            if drawn <= keep_permille:  # drawn at this rate or below: the kernel's draw stands
                out.append(rec)
                continue
            key = rec[trace_at:trace_at + 16]
            if key == _NO_TRACE:  # no ids drawn: the start time is as random as it gets
                key = rec[start_at:start_at + 8]
            if hash(key) % drawn < keep_permille:
                out.append(rec[:rate_at] + keep_bytes + rec[rate_at + 2:])
            else:
                self.thinned += 1
        return out
