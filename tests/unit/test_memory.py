"""telegen.memory: free heap left behind by a backlog goes back to the kernel."""

from __future__ import annotations

from telegen.memory import release_free_memory, resident_bytes


def test_a_freed_backlog_of_records_is_handed_back() -> None:
    backlog = [bytes(656) for _ in range(60_000)]  # records: malloc'd, not in Python's arenas
    pinned = [bytes(656) for _ in range(100)]  # later allocations keep the heap top in use
    grown = resident_bytes()
    del backlog
    released = release_free_memory()
    assert released is not None, "glibc's malloc_trim not found"
    assert released > 20 << 20, f"{released >> 20} MiB released after freeing 37 MiB of records"
    assert resident_bytes() < grown - (20 << 20)
    assert len(pinned) == 100
