"""Docker containers: list at start, then the events stream keeps id -> name/image/labels/pid fresh."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from telegen.discovery.backoff import Backoff
from telegen.threads import NamedThread

log = logging.getLogger(__name__)

COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
_REFRESH_ACTIONS = {"create", "start", "restart", "rename", "update", "unpause", "pause"}


@dataclass(frozen=True, slots=True)
class ContainerMeta:
    id: str
    name: str
    image: str
    labels: tuple[tuple[str, str], ...]  # only allowlisted labels are kept
    compose_project: str
    compose_service: str
    pid: int  # 0 when not running
    running: bool
    # Its addresses on Docker networks (bridge, user-defined): a peer there is named after it.
    # Empty with the host's network, and once it stops (the addresses go back to the pool).
    ips: tuple[str, ...] = ()

    def peer_name(self) -> str:
        """What a span's server/client address becomes when it is this container: the name its
        own spans carry as service.name from Docker (compose service, else container name)."""
        return self.compose_service or self.name


def network_ips(data: Mapping[str, Any]) -> tuple[str, ...]:
    """A running container's IPv4 and global IPv6 addresses across its networks, from inspect."""
    settings = data.get("NetworkSettings") or {}
    found: list[str] = []
    for net in (settings.get("Networks") or {}).values():
        for key in ("IPAddress", "GlobalIPv6Address"):
            ip = str((net or {}).get(key) or "")
            if ip and ip not in found:
                found.append(ip)
    return tuple(found)


def meta_from_inspect(data: Mapping[str, Any], allow: frozenset[str]) -> ContainerMeta:
    cfg = data.get("Config") or {}
    state = data.get("State") or {}
    labels = cfg.get("Labels") or {}
    running = bool(state.get("Running"))
    return ContainerMeta(
        id=str(data.get("Id", "")),
        name=str(data.get("Name", "")).lstrip("/"),
        image=str(cfg.get("Image", "")),
        labels=tuple(sorted((k, str(v)) for k, v in labels.items() if k in allow)),
        compose_project=str(labels.get(COMPOSE_PROJECT, "")),
        compose_service=str(labels.get(COMPOSE_SERVICE, "")),
        pid=int(state.get("Pid") or 0) if running else 0,
        running=running,
        ips=network_ips(data) if running else (),
    )


class DockerWatcher:
    """Owns one thread; readers get answers from the cache, connected or not."""

    def __init__(self, base_url: str = "unix:///var/run/docker.sock", label_allowlist: Iterable[str] = (),
                 timeout: float = 5.0, backoff: Backoff | None = None) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.allow = frozenset(label_allowlist)
        self._backoff = backoff or Backoff(0.8, 30.0)
        self._containers: dict[str, ContainerMeta] = {}
        self._by_pid: dict[int, str] = {}
        self._by_ip: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._stream: Any = None
        self.connected = False
        self.generation = 0  # bumped on every change, so enrichment knows to look again
        self.reconnects = 0
        self.last_error = ""
        self.events_seen = 0

    # --- reads (any thread) ---
    def get(self, container_id: str) -> ContainerMeta | None:
        return self._containers.get(container_id)

    def by_pid(self, pid: int) -> ContainerMeta | None:
        cid = self._by_pid.get(pid)
        return self._containers.get(cid) if cid else None

    def by_ip(self, ip: str) -> ContainerMeta | None:
        cid = self._by_ip.get(ip)
        return self._containers.get(cid) if cid else None

    def containers(self) -> list[ContainerMeta]:
        return list(self._containers.values())

    def __len__(self) -> int:
        return len(self._containers)

    # --- lifecycle ---
    def start(self) -> None:
        self._stop.clear()
        self._thread = NamedThread(target=self._run, name="telegen-docker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._close_stream()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _close_stream(self) -> None:
        stream = self._stream
        if stream is not None:
            with contextlib.suppress(Exception):  # a dead stream may raise anything on close
                stream.close()

    # --- the watch loop ---
    def _run(self) -> None:
        import docker

        while not self._stop.is_set():
            client = None
            try:
                client = docker.APIClient(base_url=self.base_url, timeout=self.timeout)
                since = int(time.time()) - 1  # replay what happens during the list; updates are idempotent
                self._replace_all(client)
                self.connected = True
                self.synced.set()
                self._backoff.reset()
                # network events: a running container connected to or disconnected from a network
                self._stream = client.events(since=since, decode=True, filters={"type": ["container", "network"]})
                for event in self._stream:
                    if self._stop.is_set():
                        break
                    self._handle(client, event)
                if not self._stop.is_set():
                    self.last_error = "events stream closed by dockerd"
                    log.warning("docker: events stream closed by dockerd; reconnecting")
            except Exception as exc:  # the daemon going away surfaces as many exception types
                self.last_error = f"{type(exc).__name__}: {exc}"[:200]
                if not self._stop.is_set():
                    log.warning("docker: %s; reconnecting", self.last_error)
            finally:
                self.connected = False
                self._stream = None
                if client is not None:
                    client.close()
            if self._stop.wait(self._backoff.next()):
                break
            self.reconnects += 1

    def _replace_all(self, client: Any) -> None:
        fresh: dict[str, ContainerMeta] = {}
        for item in client.containers(all=True):
            cid = item.get("Id", "")
            try:
                fresh[cid] = meta_from_inspect(client.inspect_container(cid), self.allow)
            except Exception as exc:
                if getattr(exc, "status_code", None) != 404:  # removed between list and inspect
                    raise
        with self._lock:
            self._containers = fresh
            self._by_pid = {m.pid: m.id for m in fresh.values() if m.pid}
            self._by_ip = {ip: m.id for m in fresh.values() for ip in m.ips}
            self.generation += 1

    def _handle(self, client: Any, event: Mapping[str, Any]) -> None:
        self.events_seen += 1
        action = str(event.get("Action") or event.get("status") or "").split(":", 1)[0]
        actor = event.get("Actor") or {}
        if event.get("Type") == "network":  # the network's id; the container is an attribute
            cid = str((actor.get("Attributes") or {}).get("container") or "")
            action = "update" if action in ("connect", "disconnect") and cid in self._containers else ""
        else:
            cid = str(event.get("id") or actor.get("ID") or "")
        if not cid:
            return
        if action == "destroy":
            self._remove(cid)
        elif action == "die":
            with self._lock:
                old = self._containers.get(cid)
                if old is not None:
                    self._put_locked(dataclasses.replace(old, pid=0, running=False, ips=()))
        elif action in _REFRESH_ACTIONS:
            try:
                self._put(meta_from_inspect(client.inspect_container(cid), self.allow))
            except Exception as exc:
                if getattr(exc, "status_code", None) == 404:
                    self._remove(cid)
                else:
                    raise

    def _put(self, meta: ContainerMeta) -> None:
        with self._lock:
            self._put_locked(meta)

    def _put_locked(self, meta: ContainerMeta) -> None:
        old = self._containers.get(meta.id)
        if old is not None:
            self._unindex(old)
        self._containers[meta.id] = meta
        if meta.pid:
            self._by_pid[meta.pid] = meta.id
        for ip in meta.ips:  # an address given back and handed out again names its new holder
            self._by_ip[ip] = meta.id
        self.generation += 1

    def _remove(self, cid: str) -> None:
        with self._lock:
            old = self._containers.pop(cid, None)
            if old is not None:
                self._unindex(old)
                self.generation += 1

    def _unindex(self, meta: ContainerMeta) -> None:
        """Drop the pid and addresses that still point at this container (not ones since reused)."""
        if meta.pid and self._by_pid.get(meta.pid) == meta.id:
            del self._by_pid[meta.pid]
        for ip in meta.ips:
            if self._by_ip.get(ip) == meta.id:
                del self._by_ip[ip]
