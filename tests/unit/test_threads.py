"""Agent threads carry their name into the kernel (/proc/<pid>/task/<tid>/comm)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from telegen.threads import NamedThread, name_current_thread, native_name


def comm(tid: int) -> str:
    return Path(f"/proc/self/task/{tid}/comm").read_text().rstrip("\n")


def test_native_name_drops_the_process_prefix_and_fits_the_kernel() -> None:
    assert native_name("telegen-processing") == b"processing"
    assert native_name("telegen-export-collect") == b"export-collect"
    assert native_name("telegen-k8s-replicasets") == b"k8s-replicasets"[:15]
    assert len(native_name("telegen-" + "x" * 40)) == 15
    assert native_name("worker") == b"worker"  # names without the prefix are kept
    assert len(native_name("telegen-ééééééééé")) == 15  # bytes, not characters


def test_a_named_thread_shows_its_name_to_the_kernel() -> None:
    seen: dict[str, str] = {}

    def body() -> None:
        seen["comm"] = comm(threading.get_native_id())

    main_before = comm(threading.get_native_id())
    thread = NamedThread(target=body, name="telegen-governor", daemon=True)
    thread.start()
    thread.join(5)
    assert seen["comm"] == "governor"
    assert comm(threading.get_native_id()) == main_before  # only the new thread is renamed


def test_pool_threads_are_named_by_the_initializer() -> None:
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="telegen-api-call",
                            initializer=name_current_thread) as pool:
        got = pool.submit(lambda: comm(threading.get_native_id())).result(5)
    assert got == "api-call_0"
