"""Interface counters per namespace (netlink faked) and the merged /status/ebpf."""

from __future__ import annotations

from pathlib import Path

import pytest

from telegen import netif
from telegen.signals import NumberPoint
from telegen.tcp_worker import merge_ebpf_status


def test_every_namespace_every_interface(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "blue").touch()
    (tmp_path / "gone").touch()
    stats = {"rx_bytes": 10, "tx_bytes": 20, "rx_packets": 1, "tx_packets": 2, "rx_errors": 0, "tx_errors": 3,
             "rx_dropped": 4, "tx_dropped": 0}

    def fake(ns: str | None) -> tuple[list[tuple[str, dict[str, int]]], set[str]]:
        if ns and ns.endswith("gone"):
            raise OSError("namespace vanished")
        return [("lo", stats), ("eth0", stats)], {"10.0.0.5"} if ns is None else {"10.9.9.9"}

    monkeypatch.setattr(netif, "read_namespace", fake)
    n = netif.NetworkInterfaces(netns_dir=tmp_path)
    fams = {f.name: f for f in n.collect_metrics()}
    io = fams["system.network.io"].points
    assert len(io) == 2 * 2 * 2  # 2 namespaces that answered x 2 interfaces x 2 directions
    by = {(p.attributes["telegen.network.namespace"], p.attributes["network.interface.name"],
           p.attributes["network.io.direction"]): p.value for p in io if isinstance(p, NumberPoint)}
    assert by[("blue", "eth0", "transmit")] == 20 and by[("host", "lo", "receive")] == 10
    assert n.errors == 1 and n.local_addresses() == frozenset({"10.0.0.5"})
    assert {p.value for p in fams["system.network.dropped"].points if isinstance(p, NumberPoint)} == {4, 0}


def test_merge_ebpf_status_sums_and_concatenates() -> None:
    http = {"enabled": True, "kernel": {"release": "x"}, "programs": [{"name": "http_read"}], "maps": [{"name": "a"}],
            "ringbuf": {"size": 10, "events_received": 5, "events_lost": 1, "lost_by_reason": {"ringbuf_full": 1},
                        "dropped_in_agent": 0}}
    tcp = {"programs": [{"name": "tcp_x"}], "maps": [{"name": "tcp_socks"}], "tcp": {"connections_opened": 3},
           "ringbuf": {"size": 4, "events_received": 7, "events_lost": 2, "dropped_in_agent": 1,
                       "lost_by_reason": {"tcp_ringbuf_full": 2, "tcp_sock_map_full": 0}}, "error": None}
    out = merge_ebpf_status(http, tcp)
    assert out is not None
    assert [p["name"] for p in out["programs"]] == ["http_read", "tcp_x"] and len(out["maps"]) == 2
    assert out["ringbuf"]["events_received"] == 12 and out["ringbuf"]["events_lost"] == 3
    assert out["ringbuf"]["lost_by_reason"] == {"ringbuf_full": 1, "tcp_ringbuf_full": 2, "tcp_sock_map_full": 0}
    assert out["tcp"] == {"connections_opened": 3} and merge_ebpf_status(http, None) is http
