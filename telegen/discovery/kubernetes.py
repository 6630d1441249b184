"""Kubernetes pods (this node), services and replicasets: list, then watch from the list's
resourceVersion with bookmarks; 410 Gone relists and replaces the cache; errors back off."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from telegen.discovery.backoff import Backoff
from telegen.discovery.kube_store import KubeStore
from telegen.threads import NamedThread

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class Gone(Exception):
    """The resourceVersion we watch from is too old: relist."""


def credentials_available(kubeconfig: str | None = None, sa_dir: str = SERVICE_ACCOUNT_DIR) -> bool:
    """In-cluster service account, or a kubeconfig file: is there something to talk to?"""
    if os.path.exists(os.path.join(sa_dir, "token")) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return True
    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or \
        os.path.expanduser("~/.kube/config")
    return bool(path) and os.path.isfile(path)


def own_namespace(sa_dir: str = SERVICE_ACCOUNT_DIR) -> str:
    try:
        with open(os.path.join(sa_dir, "namespace")) as fh:
            return fh.read().strip() or "unknown"
    except OSError:
        return "unknown"


def make_api_client(kubeconfig: str | None = None) -> Any:
    from kubernetes import client, config

    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, client_configuration=cfg)
    return client.ApiClient(cfg)


class ResourceWatch:
    """One kind's list+watch loop in its own thread, feeding `replace` and `apply` callbacks."""

    def __init__(self, kind: str, list_fn: Callable[..., Any], replace: Callable[[list[Any]], None],
                 apply: Callable[[str, Mapping[str, Any]], None], field_selector: str | None = None,
                 watch_timeout: int = 300, read_timeout: float = 120.0, connect_timeout: float = 5.0,
                 page_size: int = 500, backoff: Backoff | None = None) -> None:
        self.kind = kind
        self._list_fn, self._replace, self._apply = list_fn, replace, apply
        self.field_selector = field_selector
        self.watch_timeout, self.read_timeout = watch_timeout, read_timeout
        self.connect_timeout = connect_timeout
        self.page_size = page_size
        self.backoff = backoff or Backoff(0.8, 30.0)
        self.resource_version: str | None = None
        self.synced = threading.Event()
        self.connected = False
        self.last_error = ""
        self.lists = self.watches = self.relists_on_gone = self.errors = self.events = 0
        self._stop = threading.Event()
        self._resp: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = NamedThread(target=self._run, name=f"telegen-k8s-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            with contextlib.suppress(Exception):
                resp.shutdown()  # unblocks a read in progress (urllib3 >= 2.3)
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"_preload_content": False,
                              "_request_timeout": (self.connect_timeout, self.read_timeout)}
        if self.field_selector:
            kw["field_selector"] = self.field_selector
        return kw

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if self.resource_version is None:
                    self._list()
                started = time.monotonic()
                delivered = self._watch()
                if delivered or time.monotonic() - started > 1.0:
                    self.backoff.reset()
                continue  # the server closed a healthy watch (timeoutSeconds): resume at once
            except Gone:
                self.relists_on_gone += 1
                self.resource_version = None  # relist at once, as client-go's reflector does
                log.info("kubernetes %s: resourceVersion expired (410); relisting", self.kind)
                continue
            except Exception as exc:  # network, HTTP 5xx, malformed stream: all retried the same way
                self.errors += 1
                self.connected = False
                self.last_error = f"{type(exc).__name__}: {str(exc)[:160]}"
                if not self._stop.is_set():
                    log.warning("kubernetes %s: %s; retrying", self.kind, self.last_error)
            finally:
                self._resp = None
            self._stop.wait(self.backoff.next())

    def _list(self) -> None:
        items: list[Any] = []
        cont: str | None = None
        rv = ""
        while True:
            kw = self._kwargs()
            kw["limit"] = self.page_size
            if cont:
                kw["_continue"] = cont
            resp = self._list_fn(**kw)
            self._resp = resp
            try:
                body = json.loads(resp.data)
            finally:
                resp.release_conn()
            if isinstance(body, dict) and body.get("kind") == "Status":
                if body.get("code") == 410:
                    raise Gone(body.get("message", ""))  # continue token expired: start over
                raise RuntimeError(f"list failed: {body.get('message', body)}")
            items.extend(body.get("items") or [])
            meta = body.get("metadata") or {}
            rv = rv or str(meta.get("resourceVersion", ""))  # the first page's version is the snapshot's
            cont = meta.get("continue") or None
            if not cont or self._stop.is_set():
                break
        self._replace(items)
        self.resource_version = rv
        self.lists += 1
        self.connected = True
        self.synced.set()

    def _watch(self) -> bool:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.watch.watch import iter_resp_lines

        kw = self._kwargs()
        kw.update(watch=True, resource_version=self.resource_version, allow_watch_bookmarks=True,
                  timeout_seconds=self.watch_timeout)
        try:
            resp = self._list_fn(**kw)
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(str(exc.reason)) from None
            raise
        self._resp = resp
        self.watches += 1
        self.connected = True
        delivered = False
        try:
            for line in iter_resp_lines(resp):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                etype, obj = event.get("type"), event.get("object") or {}
                if etype == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message", ""))
                    raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message', '')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion")
                if etype in ("ADDED", "MODIFIED", "DELETED"):
                    self._apply(etype, obj)
                    self.events += 1
                    delivered = True
                if rv:
                    self.resource_version = str(rv)
        finally:
            resp.release_conn()
        return delivered


class KubernetesWatcher:
    """Pods of this node, services and replicasets, each with its own ResourceWatch."""

    def __init__(self, node_name: str | None, kubeconfig: str | None = None,
                 annotation_allowlist: Iterable[str] = (), max_pods: int = 20000,
                 watch_timeout: int = 300, read_timeout: float = 120.0,
                 backoff_initial: float = 0.8, backoff_max: float = 30.0,
                 api_client_factory: Callable[[], Any] | None = None) -> None:
        self.node_name = node_name
        self.kubeconfig = kubeconfig
        self.store = KubeStore(max_pods=max_pods, annotation_allowlist=annotation_allowlist)
        self._factory = api_client_factory or (lambda: make_api_client(kubeconfig))
        self._opts = {"watch_timeout": watch_timeout, "read_timeout": read_timeout}
        self._backoff = (backoff_initial, backoff_max)
        self.watches: list[ResourceWatch] = []
        self.started_at = 0.0
        self.start_error = ""

    def start(self) -> None:
        from kubernetes import client

        self.started_at = time.monotonic()
        try:
            core = [client.CoreV1Api(self._factory()) for _ in range(2)]
            apps = client.AppsV1Api(self._factory())
        except Exception as exc:
            self.start_error = f"{type(exc).__name__}: {exc}"[:200]
            log.warning("kubernetes: cannot configure the client: %s", self.start_error)
            return
        selector = f"spec.nodeName={self.node_name}" if self.node_name else None
        s = self.store
        specs = [
            ("pods", core[0].list_pod_for_all_namespaces, s.replace_pods, s.apply_pod, selector),
            ("services", core[1].list_service_for_all_namespaces, s.replace_services, s.apply_service, None),
            ("replicasets", apps.list_replica_set_for_all_namespaces, s.replace_replicasets,
             s.apply_replicaset, None),
        ]
        for kind, fn, replace, apply, sel in specs:
            w = ResourceWatch(kind, fn, replace, apply, field_selector=sel,
                              backoff=Backoff(*self._backoff), **self._opts)  # type: ignore[arg-type]
            self.watches.append(w)
            w.start()

    def stop(self, timeout: float = 5.0) -> None:
        for w in self.watches:
            w._stop.set()
        deadline = time.monotonic() + timeout
        for w in self.watches:
            w.stop(max(0.1, deadline - time.monotonic()))

    @property
    def synced(self) -> bool:
        return bool(self.watches) and all(w.synced.is_set() for w in self.watches)

    @property
    def connected(self) -> bool:
        return bool(self.watches) and all(w.connected for w in self.watches)

    def alive(self) -> bool:
        return all(w.alive() for w in self.watches)

    def wait_synced(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for w in self.watches:
            if not w.synced.wait(max(0.0, deadline - time.monotonic())):
                return False
        return bool(self.watches)

    def last_error(self) -> str:
        return self.start_error or next((w.last_error for w in self.watches if w.last_error), "")
