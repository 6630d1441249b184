"""Stand-alone kprobe smoke check, meant to run inside the 6.1 VM (tests/vm/harness.py).

Attaches a kprobe and a kretprobe on ``tcp_v4_connect`` with BCC, makes one TCP connect on
loopback, and prints one JSON object: the kernel, whether it has kprobes, and what the probes
saw for this process. It proves the VM harness independently of telegen's own loader.

    python tests/vm/kprobe_smoke.py        # exit 0 and JSON on stdout when the probes fired
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

BPF_TEXT = r"""
// No kernel headers beyond ptrace.h: clang runs ~40x slower under TCG, and <net/sock.h> costs
// ~90 s there, even <uapi/linux/in.h> ~25 s. The two fields of sockaddr_in we read are ABI.
#include <uapi/linux/ptrace.h>

struct smoke_sockaddr_in {
    u16 sin_family;
    u16 sin_port;  // network byte order
};

struct seen_t {
    u64 entries;
    u64 returns;
    s64 last_ret;
    u32 last_dport;
};

BPF_HASH(seen, u32, struct seen_t);

// int tcp_v4_connect(struct sock *sk, struct sockaddr *uaddr, int addr_len): uaddr is a kernel copy.
int on_connect(struct pt_regs *ctx, void *sk, struct smoke_sockaddr_in *uaddr) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != TARGET_TGID)
        return 0;
    struct seen_t zero = {};
    struct seen_t *s = seen.lookup_or_try_init(&tgid, &zero);
    if (!s)
        return 0;
    __sync_fetch_and_add(&s->entries, 1);
    u16 dport = 0;
    bpf_probe_read_kernel(&dport, sizeof(dport), &uaddr->sin_port);
    s->last_dport = __builtin_bswap16(dport);
    return 0;
}

int on_connect_ret(struct pt_regs *ctx) {
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct seen_t *s = seen.lookup(&tgid);
    if (!s)
        return 0;
    __sync_fetch_and_add(&s->returns, 1);
    s->last_ret = PT_REGS_RC(ctx);
    return 0;
}
"""

TARGET = "tcp_v4_connect"


def kprobes_available() -> bool:
    return (
        Path("/sys/kernel/tracing/kprobe_events").exists() or Path("/sys/kernel/debug/tracing/kprobe_events").exists()
    )


def main() -> int:
    out: dict[str, object] = {
        "kernel": {"release": platform.release(), "kprobes": kprobes_available()},
        "programs": [],
        "connects": None,
    }
    t0 = time.monotonic()
    try:
        from bcc import BPF

        b = BPF(text=BPF_TEXT, cflags=[f"-DTARGET_TGID={os.getpid()}"])
        out["compile_seconds"] = round(time.monotonic() - t0, 2)
        programs = []
        for kind, fn in (("kprobe", "on_connect"), ("kretprobe", "on_connect_ret")):
            entry: dict[str, object] = {"name": fn, "type": kind, "target": TARGET}
            try:
                if kind == "kprobe":
                    b.attach_kprobe(event=TARGET, fn_name=fn)
                else:
                    b.attach_kretprobe(event=TARGET, fn_name=fn)
                entry["attached"] = True
            except Exception as exc:  # report, don't die: the JSON says what failed
                entry["attached"] = False
                entry["reason"] = f"{type(exc).__name__}: {exc}"
            programs.append(entry)
        out["programs"] = programs

        srv = socket.create_server(("127.0.0.1", 0))
        port = srv.getsockname()[1]
        cli = socket.create_connection(("127.0.0.1", port), timeout=5)
        conn, _ = srv.accept()
        cli.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        for s in (cli, conn, srv):
            s.close()

        seen = {k.value: v for k, v in b["seen"].items()}.get(os.getpid())
        out["connects"] = {
            "port": port,
            "entries": int(seen.entries) if seen else 0,
            "returns": int(seen.returns) if seen else 0,
            "last_ret": int(seen.last_ret) if seen else None,
            "last_dport": int(seen.last_dport) if seen else None,
        }
        b.cleanup()
    except Exception as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out))
    c = out["connects"]
    ok = (
        isinstance(c, dict)
        and c["entries"] >= 1
        and c["returns"] >= 1
        and c["last_ret"] == 0
        and c["last_dport"] == c["port"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
