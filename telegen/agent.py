"""Composition root: builds the stages, wires their queues, runs start/stop/reload.

Stages never import each other; this module connects them and implements AgentControl,
the only surface the API sees. The capture stages come in already loading (startup.CaptureSet,
started before this module's heavy imports), so everything here overlaps the BPF compile.
"""

from __future__ import annotations

import gc
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
from telegen import cpu_scheduling
from telegen.api.server import ApiServer
from telegen.assemble.http import HttpSpanBuilder
from telegen.assemble.red import RedMetrics
from telegen.assemble.routes import RouteResolver
from telegen.assemble.tcp import ConnectionIndex, PeerFolder, TcpMetrics
from telegen.assemble.topology import Topology
from telegen.buildinfo import build_info
from telegen.capture.probes import LoadError
from telegen.capture.shedding import ShedController
from telegen.config import Config, LoadedConfig
from telegen.control import FlushResult, ReloadApplyError, ReloadResult
from telegen.decode.records import RecordDecoder
from telegen.decode.tcp_records import TcpDecoder
from telegen.discovery.stage import DiscoveryOptions, DiscoveryStage
from telegen.export.exporter import ExportStage
from telegen.governor import CostGovernor
from telegen.logs import RepeatFilter
from telegen.netif import NetworkInterfaces
from telegen.pipeline import BoundedQueue
from telegen.processing import ProcessingWorker
from telegen.selfmetrics import SelfCollector, ring_loss
from telegen.signals import MetricSource
from telegen.startup import CaptureSet
from telegen.tcp_worker import LocalAddresses, TcpWorker, merge_ebpf_status
from telegen.threads import NamedThread
from telegen.timefmt import go_duration, rfc3339

log = logging.getLogger(__name__)

_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le",
            "s390x": "s390x"}
# Settings that need a new process (listener, BPF programs' compile-time constants, discovery sources).
RESTART_PREFIXES = ("self_telemetry.listen", "agent.ebpf.", "discovery.", "mode", "node_name", "cluster_name")


class Agent:
    def __init__(self, loaded: LoadedConfig, capture: CaptureSet, repeat_filter: RepeatFilter | None = None) -> None:
        self._loaded = loaded
        self._config = loaded.config
        self._repeat = repeat_filter
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = threading.Event()  # capture attached and every worker started
        self.capture_set = capture
        self.phases = capture.phases
        self.started = time.time() - self.phases.now()  # process start: /status uptime counts from it
        self.registry = CollectorRegistry(auto_describe=False)
        cfg = self._config
        self.records: BoundedQueue[bytes] = capture.records
        self.red = RedMetrics()
        self.discovery = DiscoveryStage(cfg, cfg.node_name or None, options=DiscoveryOptions.from_config(cfg))
        ebpf = cfg.agent.ebpf
        self.local_addresses = LocalAddresses()
        self.tcp_metrics = TcpMetrics(PeerFolder(self.local_addresses))
        self.topology = Topology(self.tcp_metrics.peers.is_local)
        self.netif = NetworkInterfaces(self.discovery.enricher.resource_for(0)) if ebpf.network.enabled else None
        sources: list[MetricSource] = [self.red, self.tcp_metrics, *([self.netif] if self.netif else [])]
        self.export = ExportStage(cfg, sources)
        self.capture = capture.http
        self.builder = HttpSpanBuilder(self._routes(cfg), cfg.agent.http.capture_query)
        self.processing = ProcessingWorker(
            self.records, RecordDecoder(ebpf.capture_bytes), self.builder, self.red,
            self.discovery.enricher.enrich_spans, self.export.submit_spans, self._kernel_keep,
            cfg.agent.cpu_scheduling)
        self.governor = CostGovernor(self.records, self.capture.set_shed if self.capture else None,
                                     ShedController(ebpf.cpu_budget, ebpf.cpu_budget_saturated))
        self.processing.span_observers.append(self.topology.observe_groups)
        self._build_tcp(cfg)
        self.api = ApiServer(self, cfg.self_telemetry)
        self.registry.register(SelfCollector(self._self_metrics))
        for collector in [*self.export.collectors(), *self.discovery.collectors()]:
            self.registry.register(collector)

    def _build_tcp(self, cfg: Config) -> None:
        """TCP lifecycle capture and its worker; the HTTP builder joins spans to its connections."""
        self.tcp_records: BoundedQueue[bytes] = self.capture_set.tcp_records
        self.tcp_capture = self.capture_set.tcp
        tcp_capture = self.tcp_capture
        self.conn_index = ConnectionIndex((lambda: tcp_capture.live(0.25)) if tcp_capture else None)
        self.tcp_worker = TcpWorker(
            self.tcp_records, TcpDecoder(), self.tcp_metrics, self.topology, self.conn_index,
            self.discovery.enricher.resource_for, self.discovery.enricher.enrich_logs, self.export.submit_logs,
            tcp_capture.live if tcp_capture else None) if tcp_capture else None
        if tcp_capture:
            self.builder.connection_lookup = self.conn_index.lookup

    def _kernel_keep(self) -> int:
        """Permille of exchanges the kernel emits now."""
        return 1000 - self.capture.shed_permille if self.capture else 1000

    @staticmethod
    def _routes(cfg: Config) -> RouteResolver:
        return RouteResolver([r.pattern for r in cfg.agent.http.routes], cfg.agent.http.max_routes_per_service)

    # ---- lifecycle ----

    def start(self) -> None:
        """Start the API (so /healthz and /ready answer during the compile) and the stages while
        the capture loads, then wait for it or a stop. LoadError, after stopping all, if it failed."""
        try:
            with self.phases.phase("api"):
                self.api.start()
            with self.phases.phase("stages"):
                self.discovery.start()
                self.export.start()
                self.processing.start()
                self.governor.start()
                if self.tcp_worker:
                    self.tcp_worker.start()
            host, port = self.api.bound_address
            shown = host if host not in ("", "0.0.0.0", "::") else "0.0.0.0"
            print(f"telegen {build_info()['version']}: API and /metrics on http://{shown}:{port} "
                  f"(health: /healthz, status: /status)", flush=True)
            with self.phases.phase("wait_for_bpf"):
                if not self.capture_set.wait_unless(self._stop):
                    return
            if self.capture_set.error:
                raise LoadError(self.capture_set.error)
        except BaseException:
            self.stop()
            raise
        self._running.set()
        self.phases.running()
        self.governor.armed.set()  # from here on the agent's CPU is span work: hold the budget
        # Everything alive now (modules, caches, compiled-program handles) lives for the whole run:
        # out of the collector's sight, so the pipeline's young objects are all it scans.
        gc.freeze()

    def stop(self) -> None:
        """Stop capture first, then drain everything downstream within the grace period."""
        deadline = time.monotonic() + self._config.shutdown_grace_seconds
        self.capture_set.cancel(timeout=60.0)
        if self.capture:
            self.capture.stop(timeout=2.0)
        if self.tcp_capture and self.tcp_worker:
            self.tcp_capture.stop(timeout=2.0)
            self.tcp_worker.stop(timeout=2.0)
        self.governor.stop(timeout=1.0)
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
            NamedThread(target=self._reload_logged, name="telegen-reload", daemon=True).start()

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
        cpu_scheduling.apply_logged(cfg.agent.cpu_scheduling)
        self.processing.cpu_scheduling = cfg.agent.cpu_scheduling
        return restart

    def flush(self, timeout: float) -> FlushResult:
        return self.export.flush(timeout)

    def health(self) -> tuple[bool, str]:
        checks = [self.processing.healthy(), self.governor.healthy(), self.api.healthy(), self.export.healthy()]
        if self.capture:
            checks.append(self.capture.healthy())
        if self.tcp_capture and self.tcp_worker:
            checks += [self.tcp_capture.healthy(), self.tcp_worker.healthy()]
        for ok, reason in checks:
            if not ok:
                return False, reason
        return True, ""

    def readiness(self) -> dict[str, str]:
        return {"ebpf": self.capture_set.readiness(self._running.is_set()), "otlp": self.export.readiness(),
                "discovery": self.discovery.readiness()}

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
            "cpu_scheduling": {"mode": cfg.agent.cpu_scheduling, **cpu_scheduling.report()},
            "startup": self.phases.snapshot(),
        }

    def _ebpf_status(self) -> dict[str, Any] | None:
        tcp = None
        if self.tcp_capture and self.tcp_worker:
            tcp = self.tcp_capture.status()
            tcp["tcp"] = {**tcp["tcp"], **self.tcp_worker.status()}
        status = merge_ebpf_status(self.capture.status() if self.capture else None, tcp)
        if status and "http" in status:
            status["http"]["shedding"] = {**self.governor.status(), "thinned": self.processing.thinner.thinned}
            # records read from the ring buffer and waiting for decode, like tcp.queue
            status["http"]["queue"] = self.processing.records.stats()
        return status

    def _self_metrics(self) -> dict[str, Any]:
        counters = self.capture.counters() if self.capture else {}
        tcp = self.tcp_capture
        return {
            "spans_collected": self.processing.spans_collected,
            "ebpf": {"http": ring_loss(self.capture), **({"tcp": ring_loss(tcp)} if tcp and tcp.reader else {})},
            "exchanges": {"http": (counters.get("http_exchanges", 0), counters.get("http_sampled_out", 0))},
            "shed_permille": self.capture.shed_permille if self.capture else 0,
            "decode_errors": self.processing.decode_errors(),
            "route_overflow": dict(self.builder.routes.overflowed),
            "logs_suppressed": self._repeat.suppressed if self._repeat else 0,
            "memory_released_bytes": self.governor.memory_released_bytes,
            "exchanges_thinned": self.processing.thinner.thinned,
        }

