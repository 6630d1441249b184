"""A loopback Kubernetes API server speaking the real wire protocol, with injectable faults.

Written from the API concepts documentation (kubernetes.io/docs/reference/using-api/api-concepts/):
- list: `{"kind": "<Kind>List", "metadata": {"resourceVersion": "N", "continue": "..."}, "items": [...]}`,
  `limit`/`continue` chunking (a consistent snapshot at the first page's resourceVersion);
- watch (`?watch=true&resourceVersion=N`): HTTP/1.1 chunked stream of JSON lines
  `{"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}`, events after N only;
  BOOKMARK objects carry only `metadata.resourceVersion` and are sent when `allowWatchBookmarks=true`;
  a resourceVersion older than the compacted history gets `410 Gone`, either as an ERROR event with
  a `Status` object (code 410, reason Expired) on a 200 stream, or as an HTTP 410 with a `Status` body;
  `timeoutSeconds` ends the stream cleanly.
- fieldSelector `spec.nodeName=<node>` for pods.
Faults: HTTP 500, dropped connections, hangs (headers then silence, or no answer at all).
"""

from __future__ import annotations

import base64
import copy
import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

KINDS = {"/api/v1/pods": ("pods", "Pod", "v1"), "/api/v1/services": ("services", "Service", "v1"),
         "/apis/apps/v1/replicasets": ("replicasets", "ReplicaSet", "apps/v1")}


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class FakeApiServer:
    def __init__(self, bookmark_interval: float = 0.5) -> None:
        self.bookmark_interval = bookmark_interval
        self.rv = 100
        self.objects: dict[str, dict[tuple[str, str], dict[str, Any]]] = {k[0]: {} for k in KINDS.values()}
        self.events: dict[str, list[tuple[int, str, dict[str, Any]]]] = {k[0]: [] for k in KINDS.values()}
        self.compacted = 0  # watches from a resourceVersion below this get 410
        self.gone_as_http = False
        self.faults: dict[str, deque[str]] = {}  # "<resource>:<list|watch>" -> faults for the next requests
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # (resource, list|watch, params)
        self.cond = threading.Condition()
        self._generation = 0  # drop_watches() bumps it; open watch streams close
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._stopping = False
        self.port = self._server.server_address[1]

    # --- control ---
    def start(self) -> FakeApiServer:
        threading.Thread(target=self._server.serve_forever, name="fake-k8s", daemon=True).start()
        return self

    def stop(self) -> None:
        with self.cond:
            self._stopping = True
            self.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url()}}],
            "users": [{"name": "fake", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}))
        return path

    def inject(self, resource: str, verb: str, *faults: str) -> None:
        """Faults for the next requests: '500', 'drop' (close after headers/first event), 'hang',
        'hang_nothing' (accept, never answer), 'gone' (ERROR 410 event)."""
        with self.cond:
            self.faults.setdefault(f"{resource}:{verb}", deque()).extend(faults)

    def drop_watches(self) -> None:
        with self.cond:
            self._generation += 1
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget the event history: any watch resuming from an older resourceVersion gets 410."""
        with self.cond:
            self.compacted = self.rv
            for log in self.events.values():
                log.clear()

    def put(self, resource: str, obj: dict[str, Any]) -> int:
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            md = obj["metadata"]
            md["resourceVersion"] = str(self.rv)
            key = (md.get("namespace", ""), md["name"])
            etype = "MODIFIED" if key in self.objects[resource] else "ADDED"
            self.objects[resource][key] = obj
            self.events[resource].append((self.rv, etype, obj))
            self.cond.notify_all()
            return self.rv

    def delete(self, resource: str, namespace: str, name: str) -> int:
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(self.objects[resource].pop((namespace, name)))
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.events[resource].append((self.rv, "DELETED", obj))
            self.cond.notify_all()
            return self.rv

    def bulk_load(self, resource: str, objs: list[dict[str, Any]]) -> None:
        """Initial objects without watch events (as if they predate any watcher)."""
        with self.cond:
            for obj in objs:
                self.rv += 1
                obj["metadata"]["resourceVersion"] = str(self.rv)
                self.objects[resource][(obj["metadata"].get("namespace", ""), obj["metadata"]["name"])] = obj
            self.compacted = self.rv

    def count(self, resource: str, verb: str) -> int:
        return sum(1 for r, v, _ in self.requests if r == resource and v == verb)

    # --- serving ---
    def _take_fault(self, resource: str, verb: str) -> str | None:
        with self.cond:
            q = self.faults.get(f"{resource}:{verb}")
            return q.popleft() if q else None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _json(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                if url.path not in KINDS:
                    return self._json(404, _status(404, "NotFound", f"{url.path} not found"))
                resource, kind, api_version = KINDS[url.path]
                params = {k: v[-1] for k, v in parse_qs(url.query).items()}
                verb = "watch" if params.get("watch") in ("true", "1") else "list"
                api.requests.append((resource, verb, params))
                fault = api._take_fault(resource, verb)
                if fault == "500":
                    return self._json(500, _status(500, "InternalError", "etcdserver: request timed out"))
                if fault == "hang_nothing":
                    return self._sleep(30)
                if verb == "list":
                    return self._list(resource, kind, api_version, params, fault)
                return self._watch(resource, kind, api_version, params, fault)

            def _sleep(self, seconds: float) -> None:
                end = time.monotonic() + seconds
                with api.cond:
                    while not api._stopping and time.monotonic() < end:
                        api.cond.wait(0.2)
                self.close_connection = True

            def _selected(self, resource: str, obj: dict[str, Any], params: dict[str, str]) -> bool:
                sel = params.get("fieldSelector", "")
                if resource == "pods" and sel.startswith("spec.nodeName="):
                    return bool(obj.get("spec", {}).get("nodeName") == sel.split("=", 1)[1])
                return True

            def _list(self, resource: str, kind: str, api_version: str, params: dict[str, str],
                      fault: str | None) -> None:
                if fault == "hang":
                    return self._sleep(30)
                with api.cond:
                    rv = api.rv
                    items = [o for _, o in sorted(api.objects[resource].items())
                             if self._selected(resource, o, params)]
                offset = 0
                if params.get("continue"):
                    snap_rv, _, off = base64.b64decode(params["continue"]).decode().partition(":")
                    rv, offset = int(snap_rv), int(off)  # (a simplification: later pages read current data)
                limit = int(params.get("limit") or 0)
                page = json.loads(json.dumps(items[offset: offset + limit] if limit else items[offset:]))
                meta: dict[str, Any] = {"resourceVersion": str(rv)}
                if limit and offset + limit < len(items):
                    meta["continue"] = base64.b64encode(f"{rv}:{offset + limit}".encode()).decode()
                self._json(200, {"kind": kind + "List", "apiVersion": api_version, "metadata": meta,
                                 "items": page})

            def _chunk(self, event: dict[str, Any]) -> None:
                data = (json.dumps(event) + "\n").encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _watch(self, resource: str, kind: str, api_version: str, params: dict[str, str],
                       fault: str | None) -> None:
                since = int(params.get("resourceVersion") or 0)
                if since < api.compacted and api.gone_as_http:
                    return self._json(410, _status(410, "Gone", f"too old resource version: {since}"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.close_connection = True
                try:
                    if since < api.compacted or fault == "gone":
                        msg = f"too old resource version: {since} ({api.compacted})"
                        self._chunk({"type": "ERROR", "object": _status(410, "Expired", msg)})
                        self.wfile.write(b"0\r\n\r\n")
                        return
                    if fault == "hang":
                        return self._sleep(30)
                    self._stream(resource, kind, api_version, params, since, fault)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    return

            def _stream(self, resource: str, kind: str, api_version: str, params: dict[str, str],
                        since: int, fault: str | None) -> None:
                bookmarks = params.get("allowWatchBookmarks") == "true"
                deadline = time.monotonic() + float(params.get("timeoutSeconds") or 1800)
                generation = api._generation
                sent, last_bookmark = since, time.monotonic()
                while True:
                    with api.cond:
                        pending = [(rv, t, o) for rv, t, o in api.events[resource] if rv > sent]
                        if not pending:
                            api.cond.wait(0.1)
                        dropped = generation != api._generation or api._stopping
                        current_rv = api.rv
                    if dropped:
                        self.connection.shutdown(socket.SHUT_RDWR)  # a reset, no terminating chunk
                        return
                    for rv, etype, obj in pending:
                        if self._selected(resource, obj, params):
                            self._chunk({"type": etype, "object": obj})
                        sent = rv
                        if fault == "drop":
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                    now = time.monotonic()
                    if bookmarks and now - last_bookmark >= api.bookmark_interval:
                        self._chunk({"type": "BOOKMARK", "object": {
                            "kind": kind, "apiVersion": api_version,
                            "metadata": {"resourceVersion": str(max(sent, current_rv))}}})
                        sent = max(sent, current_rv)
                        last_bookmark = now
                    if now >= deadline:
                        self.wfile.write(b"0\r\n\r\n")
                        return

        return Handler
