"""Composition root: builds the stages, wires their queues, runs start/stop/reload.

Stages never import each other; this module connects them and implements AgentControl,
the only surface the API sees.
"""

from __future__ import annotations

import logging
import os
import platform
import signal
import socket
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry

from telegen import config as configmod
from telegen.api.server import ApiServer
from telegen.assemble.http import HttpSpanBuilder
from telegen.assemble.red import RedMetrics
from telegen.assemble.routes import RouteResolver
from telegen.assemble.tcp import ConnectionIndex, PeerFolder, TcpMetrics
from telegen.assemble.topology import Topology
from telegen.buildinfo import build_info
from telegen.capture.stage import CaptureStage
from telegen.capture.tcp_stage import TcpCaptureStage
from telegen.config import Config, LoadedConfig
from telegen.control import FlushResult, ReloadApplyError, ReloadResult
from telegen.decode.records import RecordDecoder
from telegen.decode.tcp_records import TcpDecoder
from telegen.discovery.stage import DiscoveryOptions, DiscoveryStage
from telegen.export.exporter import ExportStage
from telegen.logs import RepeatFilter
from telegen.netif import NetworkInterfaces
from telegen.pipeline import BoundedQueue
from telegen.processing import ProcessingWorker
from telegen.selfmetrics import SelfCollector
from telegen.signals import MetricSource
from telegen.tcp_worker import LocalAddresses, TcpWorker, merge_ebpf_status
from telegen.timefmt import go_duration, rfc3339

log = logging.getLogger(__name__)

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
            "s390x": "s390x"}
# Settings that need a new process (listener, BPF programs' compile-time constants, discovery sources).
RESTART_PREFIXES = ("self_telemetry.listen", "agent.ebpf.", "discovery.", "mode", "node_name", "cluster_name")


class Agent:
    def __init__(self, loaded: LoadedConfig, repeat_filter: RepeatFilter | None = None) -> None:
        self._loaded = loaded
        self._config = loaded.config
        self._repeat = repeat_filter
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=False)
        cfg = self._config
        self.records: BoundedQueue[bytes] = BoundedQueue("records", 65536, "drop_newest")
        self.red = RedMetrics()
        self.discovery = DiscoveryStage(cfg, cfg.node_name or None, options=self._discovery_options(cfg))
        ebpf = cfg.agent.ebpf
        self.local_addresses = LocalAddresses()
        self.tcp_metrics = TcpMetrics(PeerFolder(self.local_addresses))
        self.topology = Topology(self.tcp_metrics.peers.is_local)
        self.netif = NetworkInterfaces(self.discovery.enricher.resource_for(0)) if ebpf.network.enabled else None
        sources: list[MetricSource] = [self.red, self.tcp_metrics, *([self.netif] if self.netif else [])]
        self.export = ExportStage(cfg, sources)
        self.capture: CaptureStage | None = (CaptureStage(ebpf, self.records)
                                             if ebpf.enabled and ebpf.http.enabled else None)
        self.builder = HttpSpanBuilder(self._routes(cfg), cfg.agent.http.capture_query)
        self.processing = ProcessingWorker(
            self.records, RecordDecoder(ebpf.capture_bytes), self.builder, self.red,
            self.discovery.enricher.enrich_spans, self.export.submit_spans,
            self.capture.set_shed if self.capture else None, ebpf.cpu_budget)
        self.processing.span_observers.append(self.topology.observe_spans)
        self._build_tcp(cfg)
        self.api = ApiServer(self, cfg.self_telemetry)
        self.registry.register(SelfCollector(self._self_metrics))
        for collector in [*self.export.collectors(), *self.discovery.collectors()]:
            self.registry.register(collector)

    def _build_tcp(self, cfg: Config) -> None:
        """TCP lifecycle capture and its worker; the HTTP builder joins spans to its connections."""
        ebpf = cfg.agent.ebpf
        self.tcp_records: BoundedQueue[bytes] = BoundedQueue("tcp_records", 65536, "drop_newest")
        self.tcp_capture = TcpCaptureStage(ebpf, self.tcp_records) if ebpf.enabled and ebpf.tcp.enabled else None
        tcp_capture = self.tcp_capture
        self.conn_index = ConnectionIndex((lambda: tcp_capture.live(0.25)) if tcp_capture else None)
        self.tcp_worker = TcpWorker(
            self.tcp_records, TcpDecoder(), self.tcp_metrics, self.topology, self.conn_index,
            self.discovery.enricher.resource_for, self.discovery.enricher.enrich_logs, self.export.submit_logs,
            tcp_capture.live if tcp_capture else None) if tcp_capture else None
        if tcp_capture:
            self.builder.connection_lookup = self.conn_index.lookup

    @staticmethod
    def _discovery_options(cfg: Config) -> DiscoveryOptions:
        d = cfg.discovery
        return DiscoveryOptions(
            kubeconfig=d.kubernetes.kubeconfig or None, label_allowlist=d.kubernetes.label_allowlist,
            annotation_allowlist=d.kubernetes.annotation_allowlist, max_pods=d.kubernetes.max_pods,
            docker_url=d.docker.url, docker_label_allowlist=d.docker.label_allowlist,
            cloud_base_urls=dict(d.cloud.base_urls), cloud_timeout=d.cloud.timeout)

    @staticmethod
    def _routes(cfg: Config) -> RouteResolver:
        return RouteResolver([r.pattern for r in cfg.agent.http.routes], cfg.agent.http.max_routes_per_service)

    # ---- lifecycle ----

    def start(self) -> None:
        self.discovery.start()
        self.export.start()
        if self.capture:
            self.capture.start()
        if self.tcp_capture and self.tcp_worker:
            self.tcp_capture.start()
            self.tcp_worker.start()
        self.processing.start()
        self.api.start()
        host, port = self.api.bound_address
        shown = host if host not in ("", "0.0.0.0", "::") else "0.0.0.0"
        print(f"telegen {build_info()['version']}: API and /metrics on http://{shown}:{port} "
              f"(health: /healthz, status: /status)", flush=True)
        log.info("agent started in %.2fs", time.time() - self.started)

    def stop(self) -> None:
        """Stop capture first, then drain everything downstream within the grace period."""
        deadline = time.monotonic() + self._config.shutdown_grace_seconds
        if self.capture:
            self.capture.stop(timeout=2.0)
        if self.tcp_capture and self.tcp_worker:
            self.tcp_capture.stop(timeout=2.0)
            self.tcp_worker.stop(timeout=2.0)
        self.processing.stop(timeout=max(0.5, deadline - time.monotonic()))
        self.export.stop(timeout=max(0.5, deadline - time.monotonic() - 0.5))
        self.discovery.stop(timeout=1.0)
        self.api.stop(timeout=1.0)

    def run(self) -> int:
        """Run until SIGTERM/SIGINT (a second one exits at once); SIGHUP reloads."""
        def on_term(signum: int, _frame: Any) -> None:
            if self._stop.is_set():
                os._exit(128 + signum)
            log.info("received %s: stopping (grace %.0fs)", signal.Signals(signum).name,
                     self._config.shutdown_grace_seconds)
            self._stop.set()

        def on_hup(_signum: int, _frame: Any) -> None:
            threading.Thread(target=self._reload_logged, name="telegen-reload", daemon=True).start()

        signal.signal(signal.SIGTERM, on_term)
        signal.signal(signal.SIGINT, on_term)
        signal.signal(signal.SIGHUP, on_hup)
        self.start()
        while not self._stop.wait(1.0):
            pass
        self.stop()
        log.info("stopped")
        return 0

    def _reload_logged(self) -> None:
        try:
            result = self.reload()
            log.info("SIGHUP reload: changed=%s restart_required=%s", result.changed, result.restart_required)
        except configmod.ConfigError as exc:
            log.error("SIGHUP reload rejected, keeping the running config: %s", exc)
        except ReloadApplyError as exc:
            log.error("SIGHUP reload failed and was rolled back: %s", exc)

    # ---- AgentControl ----

    def config(self) -> Config:
        return self._config

    def reload(self) -> ReloadResult:
        with self._lock:
            new = configmod.load(self._loaded.path).config
            old = self._config
            changed = configmod.diff(old, new)
            restart = [c for c in changed if c.startswith(RESTART_PREFIXES)]
            try:
                restart += [r for r in self._apply(new) if r not in restart]
            except Exception as exc:
                try:
                    self._apply(old)
                finally:
                    raise ReloadApplyError(f"applying the new configuration failed: {exc}") from exc
            self._config = new
            return ReloadResult(changed, restart)

    def _apply(self, cfg: Config) -> list[str]:
        """Hand each stage its part; returns what the stages say needs a restart."""
        self.api.apply_settings(cfg.self_telemetry)
        restart = self.export.apply_config(cfg)
        self.builder.routes = self._routes(cfg)
        self.builder.capture_query = cfg.agent.http.capture_query
        return restart

    def flush(self, timeout: float) -> FlushResult:
        return self.export.flush(timeout)

    def health(self) -> tuple[bool, str]:
        checks = [self.processing.healthy(), self.api.healthy(), self.export.healthy()]
        if self.capture:
            checks.append(self.capture.healthy())
        if self.tcp_capture and self.tcp_worker:
            checks += [self.tcp_capture.healthy(), self.tcp_worker.healthy()]
        for ok, reason in checks:
            if not ok:
                return False, reason
        return True, ""

    def readiness(self) -> dict[str, str]:
        return {"ebpf": self.capture.readiness() if self.capture else "disabled",
                "otlp": self.export.readiness(), "discovery": self.discovery.readiness()}

    def snapshot(self, section: str) -> dict[str, Any]:
        if section == "status":
            return self._status()
        if section == "ebpf":
            return self._ebpf_status() or {
                "enabled": False, "kernel": {"release": os.uname().release}, "programs": [], "maps": [],
                "ringbuf": {"size": 0, "events_received": 0, "events_lost": 0}}
        if section == "export":
            return self.export.status()
        if section == "discovery":
            return self.discovery.status()
        if section == "topology":
            return self.topology.snapshot()
        raise KeyError(section)

    def _status(self) -> dict[str, Any]:
        cfg = self._config
        uptime = int(time.time() - self.started)
        ebpf = self._ebpf_status()
        export = self.export.status()
        queues = export.get("queues", {})
        return {
            **build_info(), "uptime": go_duration(uptime), "uptime_seconds": uptime, "mode": cfg.mode,
            "host": {"name": socket.gethostname(), "os": "linux",
                     "arch": _GO_ARCH.get(platform.machine(), platform.machine()), "kernel": os.uname().release},
            "ebpf": {"enabled": ebpf is not None,
                     "programs_loaded": sum(p["attached"] for p in ebpf["programs"]) if ebpf else 0,
                     "maps_created": len(ebpf["maps"]) if ebpf else 0,
                     "ringbuf_size": ebpf["ringbuf"]["size"] if ebpf else 0},
            "profiling": {"enabled": False, "sample_rate": cfg.agent.profiling.sample_rate, "profiles_collected": 0},
            "export": {"endpoint": export.get("endpoint"), "connected": export.get("connected", False),
                       "last_export": export.get("last_export"),
                       "spans_exported": queues.get("traces", {}).get("exported", 0),
                       "metrics_exported": queues.get("metrics", {}).get("exported", 0)},
            "discovery": self.discovery.summary(),
            "started": rfc3339(self.started),
        }

    def _ebpf_status(self) -> dict[str, Any] | None:
        tcp = None
        if self.tcp_capture and self.tcp_worker:
            tcp = self.tcp_capture.status()
            tcp["tcp"] = {**tcp["tcp"], **self.tcp_worker.status()}
        return merge_ebpf_status(self.capture.status() if self.capture else None, tcp)

    def _tcp_loss(self) -> dict[str, tuple[int, dict[str, int]]]:
        if not self.tcp_capture or not self.tcp_capture.reader:
            return {}
        ring = self.tcp_capture.status()["ringbuf"]
        return {"tcp": (self.tcp_capture.reader.received, dict(ring["lost_by_reason"]))}

    def _self_metrics(self) -> dict[str, Any]:
        counters = self.capture.counters() if self.capture else {}
        lost: dict[str, int] = {}
        if self.capture:
            ring = self.capture.status()["ringbuf"]
            lost = dict(ring["lost_by_reason"])
        return {
            "spans_collected": self.processing.spans_collected,
            "ebpf": {"http": (self.capture.reader.received if self.capture and self.capture.reader else 0, lost),
                     **self._tcp_loss()},
            "exchanges": {"http": (counters.get("http_exchanges", 0), counters.get("http_sampled_out", 0))},
            "shed_permille": self.capture.shed_permille if self.capture else 0,
            "decode_errors": self.processing.decode_errors(),
            "route_overflow": dict(self.builder.routes.overflowed),
            "logs_suppressed": self._repeat.suppressed if self._repeat else 0,
        }

