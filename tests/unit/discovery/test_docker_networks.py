"""A container's addresses on Docker networks, from inspect and kept fresh by events."""

from __future__ import annotations

from typing import Any

from telegen.discovery.docker import DockerWatcher, meta_from_inspect, network_ips

CID = "c" * 64


def inspect(running: bool = True, networks: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    return {"Id": CID, "Name": "/web", "Config": {"Image": "busybox", "Labels": {}},
            "State": {"Running": running, "Pid": 77 if running else 0},
            "NetworkSettings": {"Networks": networks if networks is not None else
                                {"bridge": {"IPAddress": "172.17.0.3", "GlobalIPv6Address": ""},
                                 "backend": {"IPAddress": "10.5.0.2", "GlobalIPv6Address": "fd00::2"}}}}


def test_network_ips_from_every_network() -> None:
    assert network_ips(inspect()) == ("172.17.0.3", "10.5.0.2", "fd00::2")
    assert network_ips(inspect(networks={"host": {"IPAddress": ""}})) == ()  # the host's network
    assert network_ips({"NetworkSettings": None}) == ()


def test_a_stopped_container_holds_no_address() -> None:
    assert meta_from_inspect(inspect(), frozenset()).ips == ("172.17.0.3", "10.5.0.2", "fd00::2")
    assert meta_from_inspect(inspect(running=False), frozenset()).ips == ()


class FakeClient:
    def __init__(self) -> None:
        self.data = inspect()
        self.inspected = 0

    def inspect_container(self, cid: str) -> dict[str, Any]:
        self.inspected += 1
        return self.data


def test_network_events_refresh_the_container_they_name() -> None:
    watcher, client = DockerWatcher(), FakeClient()
    watcher._handle(client, {"Type": "container", "Action": "start", "id": CID, "Actor": {"ID": CID}})
    assert watcher.by_ip("10.5.0.2") is not None and watcher.by_ip("10.5.0.2").name == "web"
    client.data = inspect(networks={"bridge": {"IPAddress": "172.17.0.3"}})
    # a network event carries the network's id; the container is an attribute
    watcher._handle(client, {"Type": "network", "Action": "disconnect", "Actor": {
        "ID": "n" * 64, "Attributes": {"container": CID, "name": "backend", "type": "bridge"}}})
    assert watcher.by_ip("10.5.0.2") is None and watcher.by_ip("172.17.0.3") is not None
    before = client.inspected
    watcher._handle(client, {"Type": "network", "Action": "create", "Actor": {"ID": "n" * 64, "Attributes": {}}})
    watcher._handle(client, {"Type": "network", "Action": "connect", "Actor": {
        "ID": "n" * 64, "Attributes": {"container": "d" * 64}}})  # not a container we know
    assert client.inspected == before


def test_die_and_destroy_release_the_addresses() -> None:
    watcher, client = DockerWatcher(), FakeClient()
    watcher._handle(client, {"Type": "container", "Action": "start", "id": CID})
    watcher._handle(client, {"Type": "container", "Action": "die", "id": CID})
    meta = watcher.get(CID)
    assert meta is not None and not meta.running and meta.ips == () and watcher.by_ip("172.17.0.3") is None
    assert watcher.by_pid(77) is None
    watcher._handle(client, {"Type": "container", "Action": "start", "id": CID})
    watcher._handle(client, {"Type": "container", "Action": "destroy", "id": CID})
    assert watcher.by_ip("172.17.0.3") is None and watcher.get(CID) is None
