"""charts/telegen renders, lints and validates against the Kubernetes schemas in both security modes."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from telegen import config as tconfig
from tests.conftest import require

from .chart import CHART, KUBE_VERSIONS, LEAST_PRIVILEGE, lint, manifests, render

MODES = {"default": None, "leastPrivilege": LEAST_PRIVILEGE}
LEAST_CAPS = {"BPF", "PERFMON", "SYS_PTRACE", "DAC_READ_SEARCH", "SYS_RESOURCE", "NET_ADMIN", "SYS_ADMIN"}


@pytest.fixture(scope="module", autouse=True)
def _helm() -> None:
    try:
        import helm_python  # noqa: F401
        import kubernetes_validate  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the venv
        require(False, f"helm-python-sdk and kubernetes-validate ({exc}); make setup installs them")


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def daemonset(values: dict[str, Any] | None = None) -> dict[str, Any]:
    (ds,) = by_kind(manifests(values), "DaemonSet")
    return ds


def agent_container(ds: dict[str, Any]) -> dict[str, Any]:
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    container: dict[str, Any] = c
    return container


@pytest.mark.parametrize("mode", MODES)
def test_lint_is_clean(mode: str) -> None:
    report = lint(MODES[mode], strict=True)
    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert serious == [], serious


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("mode", MODES)
def test_every_manifest_validates_against_kubernetes_schema(mode: str, kube_version: str) -> None:
    import kubernetes_validate

    values = {**(MODES[mode] or {}), "auth": {"existingSecret": "telegen-api"}}
    docs = manifests(values)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["ClusterRole", "ClusterRoleBinding", "ConfigMap", "DaemonSet", "Service",
                     "ServiceAccount"]
    for doc in docs:
        # strict: unknown fields are errors too (a typo in a template would pass otherwise)
        kubernetes_validate.validate(doc, kube_version, strict=True)


def test_daemonset_key_fields_default() -> None:
    ds = daemonset()
    spec = ds["spec"]
    pod = spec["template"]["spec"]
    c = agent_container(ds)
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    assert spec["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1
    assert pod["hostPID"] is True
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]  # every taint
    drain_grace = yaml.safe_load((Path(tconfig.__file__).parent / "defaults.yaml").read_text())[
        "shutdown_grace_seconds"]
    assert pod["terminationGracePeriodSeconds"] > drain_grace
    assert pod["serviceAccountName"] == "telegen"

    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert "API_TOKEN" not in env  # no secret configured
    assert c["args"] == ["run", "--config", "/etc/telegen/config.yaml"]
    assert c["ports"] == [{"name": "api", "containerPort": 19090, "protocol": "TCP"}]

    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "api"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "api"}
    startup = c["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    # the BCC compile may take minutes on a small node: give it at least 2 of them
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120

    res = c["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    assert "cpu" not in res["limits"]  # throttling the drain thread loses events

    assert c["securityContext"]["privileged"] is True
    assert c["securityContext"]["runAsUser"] == 0

    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    expected = {
        "/sys/kernel/tracing": "/sys/kernel/tracing",
        "/sys/fs/cgroup": "/sys/fs/cgroup",
        "/host/proc": "/proc",
        "/host/lib/modules": "/lib/modules",
        "/host/usr/src": "/usr/src",
        "/var/run/docker.sock": "/var/run/docker.sock",
    }
    for mount_path, host_path in expected.items():
        assert mount_path in mounts, mount_path
        assert mounts[mount_path]["readOnly"] is True, mount_path
        assert volumes[mounts[mount_path]["name"]]["hostPath"]["path"] == host_path
    assert volumes["docker-socket"]["hostPath"]["type"] == "Socket"
    assert mounts["/etc/telegen"]["readOnly"] is True
    assert volumes["config"]["configMap"]["name"] == "telegen"


def test_daemonset_least_privilege() -> None:
    ds = daemonset(LEAST_PRIVILEGE)
    sc = agent_container(ds)["securityContext"]
    assert sc["privileged"] is False
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == LEAST_CAPS
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # host namespaces and mounts are the same in both modes
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True and pod["hostNetwork"] is True
    assert all(m.get("readOnly") for m in agent_container(ds)["volumeMounts"])


def test_every_least_privilege_capability_has_its_reason_in_values() -> None:
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    caps = values["securityContext"]["leastPrivilege"]["capabilities"]
    assert set(caps) == LEAST_CAPS
    for cap in caps:
        assert re.search(rf"^\s*# {cap}: \S.{{20,}}", text, re.M), f"no reason given for {cap}"
    assert "hostNetwork: true" in text and re.search(r"^# hostNetwork: true puts", text, re.M)


def test_bad_security_mode_is_refused() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"securityContext\.mode"):
        render({"securityContext": {"mode": "yolo"}})


def test_termination_grace_must_exceed_drain_grace() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds"):
        render({"terminationGracePeriodSeconds": 10})
    ds = daemonset({"config": {"shutdown_grace_seconds": 40}, "terminationGracePeriodSeconds": 60})
    assert ds["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 60


def test_configmap_is_a_valid_agent_config(tmp_path: Path) -> None:
    (cm,) = by_kind(manifests(), "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    loaded = tconfig.load(path, env={})
    assert loaded.config.self_telemetry.listen == ":19090"
    assert loaded.config.self_telemetry.auth.enabled is False


def test_config_change_rolls_the_pods() -> None:
    base = daemonset()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    same = daemonset()["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    changed = daemonset({"config": {"log_level": "debug"}})["spec"]["template"]["metadata"][
        "annotations"]["checksum/config"]
    assert base == same
    assert re.fullmatch(r"[0-9a-f]{64}", base)
    assert changed != base


def test_api_token_from_existing_secret(tmp_path: Path) -> None:
    values = {"auth": {"existingSecret": "telegen-api", "secretKey": "token"}}
    docs = manifests(values)
    (ds,) = by_kind(docs, "DaemonSet")
    env = {e["name"]: e for e in agent_container(ds)["env"]}
    assert env["API_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "telegen-api", "key": "token"}
    (cm,) = by_kind(docs, "ConfigMap")
    assert "s3cret" not in cm["data"]["config.yaml"]
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    auth = tconfig.load(path, env={"API_TOKEN": "s3cret"}).config.self_telemetry.auth
    assert auth.enabled is True and auth.bearer_token == "s3cret"
    assert set(auth.exempt_paths) >= {"/healthz", "/ready"}  # the kubelet probes stay open
    # an unset secret key must not start an open agent: empty token with auth on is refused
    with pytest.raises(tconfig.ConfigError):
        tconfig.load(path, env={})


def test_rbac_is_read_only_and_minimal() -> None:
    docs = manifests()
    (role,) = by_kind(docs, "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(sorted(r["resources"]))): sorted(r["verbs"])
             for r in role["rules"]}
    assert rules == {
        (("",), ("namespaces", "nodes", "pods", "services")): ["get", "list", "watch"],
        (("apps",), ("replicasets",)): ["get", "list", "watch"],
    }
    (binding,) = by_kind(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "telegen", "namespace": "monitoring"}]
    assert by_kind(docs, "ServiceAccount")[0]["metadata"]["name"] == "telegen"


def test_service_and_optional_servicemonitor() -> None:
    docs = manifests()
    (svc,) = by_kind(docs, "Service")
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["ports"] == [{"name": "api", "port": 19090, "targetPort": "api", "protocol": "TCP"}]
    assert not by_kind(docs, "ServiceMonitor")  # off by default: the CRD may not exist

    docs = manifests({"serviceMonitor": {"enabled": True},
                      "auth": {"existingSecret": "telegen-api"}})
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"] == svc["spec"]["selector"]
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "api" and ep["path"] == "/metrics"
    assert ep["authorization"]["credentials"] == {"name": "telegen-api", "key": "token"}


def test_notes_tell_how_to_check_the_agent() -> None:
    notes = render()["telegen/templates/NOTES.txt"]
    for needle in ("rollout status daemonset/telegen", "/healthz", "/ready", "/status/ebpf"):
        assert needle in notes
