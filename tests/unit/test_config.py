"""telegen.config: YAML + ${ENV} + OTEL_* into frozen models; every problem names its field path."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from telegen import config as configmod
from telegen.config import Config, ConfigError, diff, load, parse_listen


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        load(_write(tmp_path, text), env=env or {})
    return info.value.problems


@pytest.fixture(autouse=True)
def _no_etc_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # load(None) must not pick up a real /etc/telegen/config.yaml on the test machine
    monkeypatch.setattr(configmod, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")


# --- defaults ---------------------------------------------------------------------------------

def test_embedded_defaults_validate_and_match_the_model_defaults() -> None:
    loaded = load(None, env={})
    assert loaded.path is None
    assert loaded.config == Config()
    assert loaded.config.self_telemetry.listen == ":19090"
    assert loaded.config.agent.ebpf.capture_bytes == 256
    assert loaded.config.otlp.endpoint == ""


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    loaded = load(_write(tmp_path, ""), env={})
    assert loaded.config == Config()
    assert loaded.path == tmp_path / "config.yaml"


def test_config_is_frozen() -> None:
    cfg = load(None, env={}).config
    with pytest.raises(pydantic.ValidationError):
        cfg.cluster_name = "x"  # type: ignore[misc]


# --- unknown keys and field paths --------------------------------------------------------------

@pytest.mark.parametrize(("text", "path"), [
    ("otlp:\n  compresion: gzip\n", "otlp.compresion"),
    ("clustr_name: a\n", "clustr_name"),
    ("self_telemetry:\n  auth:\n    enabeld: true\n", "self_telemetry.auth.enabeld"),
    ("agent:\n  ebpf:\n    http:\n      enable: true\n", "agent.ebpf.http.enable"),
    # keys that begin like pydantic's union-branch labels ("str...", "bool...") keep their name
    ("otlp:\n  stream: true\n", "otlp.stream"),
    ("otlp:\n  boolean: true\n", "otlp.boolean"),
    ("otlp:\n  bool: true\n", "otlp.bool"),
    ("agent:\n  http:\n    routes:\n      - {pattern: /a, extra: 1}\n", "agent.http.routes[0].extra"),
])
def test_unknown_key_is_rejected_with_its_exact_path(tmp_path: Path, text: str, path: str) -> None:
    problems = _problems(tmp_path, text)
    assert problems == {path: "unknown key"}


def test_every_problem_is_reported_not_just_the_first(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "otlp:\n  compresion: gzip\nself_telemetry:\n  listen: ':99999'\n")
    assert set(problems) == {"otlp.compresion", "self_telemetry.listen"}


def test_config_error_message_and_source_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "otlp:\n  compresion: gzip\n")
    with pytest.raises(ConfigError) as info:
        load(path, env={})
    assert info.value.source == str(path)
    assert "otlp.compresion: unknown key" in str(info.value)


def test_union_field_error_names_the_field_without_branch_labels(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "discovery:\n  docker:\n    enabled: maybe\n")
    assert list(problems) == ["discovery.docker.enabled"]


@pytest.mark.parametrize("value", ["auto", "true", "false"])
def test_discovery_toggle_accepts_auto_and_booleans(tmp_path: Path, value: str) -> None:
    cfg = load(_write(tmp_path, f"discovery:\n  kubernetes:\n    enabled: {value}\n"), env={}).config
    assert cfg.discovery.kubernetes.enabled == {"auto": "auto", "true": True, "false": False}[value]


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "export:\n  traces:\n    queue_size: lots\n")
    assert list(problems) == ["export.traces.queue_size"]


def test_compression_must_be_gzip_or_none(tmp_path: Path) -> None:
    assert list(_problems(tmp_path, "otlp:\n  compression: zstd\n")) == ["otlp.compression"]


def test_non_mapping_root_is_rejected(tmp_path: Path) -> None:
    assert _problems(tmp_path, "- a\n- b\n") == {"(root)": "the configuration must be a YAML mapping"}


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path / "missing.yaml", env={})
    assert list(info.value.problems) == ["(file)"]
    assert "cannot read" in info.value.problems["(file)"]


def test_invalid_yaml_gives_line_and_column(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "otlp:\n  endpoint: ok\n  headers: {a: 1\n")
    assert list(problems) == ["(yaml)"]
    assert problems["(yaml)"].startswith("invalid YAML at line ")
    assert "column" in problems["(yaml)"]


def test_invalid_yaml_points_at_the_bad_line(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "mode: agent\ncluster_name: a\n\tbad: tab\n")
    assert "line 3" in problems["(yaml)"]



def test_a_repeated_key_is_an_error_not_a_silent_override(tmp_path: Path) -> None:
    # PyYAML alone would keep the second `otlp:` and drop the first one's endpoint
    problems = _problems(tmp_path, "otlp:\n  endpoint: collector:4317\nmode: agent\notlp:\n  compression: gzip\n")
    assert problems == {"(yaml)": "invalid YAML at line 4, column 1: found duplicate key 'otlp'"}
    nested = _problems(tmp_path, "otlp: {endpoint: a:4317, endpoint: b:4317}\n")
    assert "duplicate key 'endpoint'" in nested["(yaml)"]


def test_a_merge_key_may_be_overridden(tmp_path: Path) -> None:
    text = "otlp:\n  <<: {endpoint: 'a:4317', timeout: 3}\n  endpoint: 'b:4317'\n"
    otlp = load(_write(tmp_path, text), env={}).config.otlp
    assert (otlp.endpoint, otlp.timeout) == ("b:4317", 3)

# --- self_telemetry.listen ---------------------------------------------------------------------

@pytest.mark.parametrize(("listen", "host", "port"), [
    (":19090", "", 19090),
    ("127.0.0.1:19090", "127.0.0.1", 19090),
    ("[::1]:19090", "::1", 19090),
    ("0.0.0.0:19090", "0.0.0.0", 19090),
    ("localhost:1", "localhost", 1),
    ("node-1.example:65535", "node-1.example", 65535),
])
def test_listen_forms_accepted(tmp_path: Path, listen: str, host: str, port: int) -> None:
    cfg = load(_write(tmp_path, f"self_telemetry:\n  listen: '{listen}'\n"), env={}).config
    assert cfg.self_telemetry.listen == listen
    assert parse_listen(listen) == (host, port)


@pytest.mark.parametrize("listen", [":99999", ":0", "19090", "127.0.0.1:", "[::1:19090", "[zz]:1",
                                    "a b:80", ":http", "127.0.0.1:-1"])
def test_bad_listen_names_the_field(tmp_path: Path, listen: str) -> None:
    problems = _problems(tmp_path, f"self_telemetry:\n  listen: '{listen}'\n")
    assert list(problems) == ["self_telemetry.listen"]


def test_listen_port_out_of_range_message() -> None:
    with pytest.raises(ValueError, match="out of range"):
        parse_listen(":99999")


# --- auth, cors, capture_bytes, other validators -------------------------------------------------

def test_auth_enabled_with_empty_token_names_self_telemetry_auth(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "self_telemetry:\n  auth:\n    enabled: true\n    bearer_token: '  '\n")
    assert list(problems) == ["self_telemetry.auth"]
    assert "bearer_token" in problems["self_telemetry.auth"]


def test_auth_token_from_env(tmp_path: Path) -> None:
    text = "self_telemetry:\n  auth:\n    enabled: true\n    bearer_token: ${TOKEN}\n"
    cfg = load(_write(tmp_path, text), env={"TOKEN": "s3cret"}).config
    assert cfg.self_telemetry.auth.enabled
    assert cfg.self_telemetry.auth.bearer_token == "s3cret"
    # the variable unset expands to "" and the same file becomes invalid
    assert list(_problems(tmp_path, text)) == ["self_telemetry.auth"]


def test_cors_wildcard_with_auth_is_rejected(tmp_path: Path) -> None:
    text = ("self_telemetry:\n  auth: {enabled: true, bearer_token: t}\n"
            "  cors: {enabled: true, allowed_origins: ['*']}\n")
    assert list(_problems(tmp_path, text)) == ["self_telemetry"]


@pytest.mark.parametrize("value", [16, 32, 256, 1024, 4096])
def test_capture_bytes_power_of_two_accepted(tmp_path: Path, value: int) -> None:
    cfg = load(_write(tmp_path, f"agent:\n  ebpf:\n    capture_bytes: {value}\n"), env={}).config
    assert cfg.agent.ebpf.capture_bytes == value


@pytest.mark.parametrize("value", [100, 257, 3000, 8, 8192])
def test_capture_bytes_not_power_of_two_or_out_of_range(tmp_path: Path, value: int) -> None:
    problems = _problems(tmp_path, f"agent:\n  ebpf:\n    capture_bytes: {value}\n")
    assert list(problems) == ["agent.ebpf.capture_bytes"]


def test_capture_bytes_power_of_two_message(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "agent:\n  ebpf:\n    capture_bytes: 100\n")
    assert problems["agent.ebpf.capture_bytes"] == "must be a power of two"


def test_route_pattern_must_be_absolute(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "agent:\n  http:\n    routes: [{pattern: /ok}, {pattern: 'users/{id}'}]\n")
    assert list(problems) == ["agent.http.routes[1].pattern"]


def test_route_patterns_load(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, "agent:\n  http:\n    routes: [{pattern: '/api/users/{id}'}]\n"), env={}).config
    assert [r.pattern for r in cfg.agent.http.routes] == ["/api/users/{id}"]


@pytest.mark.parametrize("endpoint", ["collector:4317", "http://collector:4317", "https://c.example:443/"])
def test_otlp_endpoint_forms(tmp_path: Path, endpoint: str) -> None:
    cfg = load(_write(tmp_path, f"otlp:\n  endpoint: '{endpoint}'\n"), env={}).config
    assert cfg.otlp.endpoint == endpoint


def test_otlp_endpoint_without_port_is_rejected(tmp_path: Path) -> None:
    assert list(_problems(tmp_path, "otlp:\n  endpoint: collector\n")) == ["otlp.endpoint"]


# --- ${VAR} expansion -----------------------------------------------------------------------------

def test_env_expansion_plain_default_and_missing(tmp_path: Path) -> None:
    text = ("cluster_name: ${CLUSTER}\n"
            "node_name: ${NODE:-fallback}\n"
            "otlp:\n  endpoint: '${HOST:-localhost}:${PORT}'\n")
    cfg = load(_write(tmp_path, text), env={"CLUSTER": "prod", "PORT": "4317"}).config
    assert cfg.cluster_name == "prod"
    assert cfg.node_name == "fallback"
    assert cfg.otlp.endpoint == "localhost:4317"


def test_env_default_used_when_variable_is_empty(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, "cluster_name: ${C:-dflt}\n"), env={"C": ""}).config
    assert cfg.cluster_name == "dflt"


def test_env_set_value_beats_default(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, "cluster_name: ${C:-dflt}\n"), env={"C": "real"}).config
    assert cfg.cluster_name == "real"


def test_env_expansion_into_typed_fields_and_lists(tmp_path: Path) -> None:
    text = ("export:\n  traces:\n    queue_size: ${QS:-77}\n"
            "self_telemetry:\n  cors:\n    allowed_origins: ['${ORIGIN}']\n")
    cfg = load(_write(tmp_path, text), env={"ORIGIN": "https://a.example"}).config
    assert cfg.export.traces.queue_size == 77
    assert cfg.self_telemetry.cors.allowed_origins == ("https://a.example",)


def test_env_expansion_result_is_still_validated(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "self_telemetry:\n  listen: ':${P}'\n", env={"P": "99999"})
    assert list(problems) == ["self_telemetry.listen"]


def test_expand_env_leaves_non_strings_and_unmatched_text() -> None:
    tree = {"a": 1, "b": [True, "$HOME ${X}"], "c": {"d": None, "e": "${Y:-}"}}
    assert configmod.expand_env(tree, {"X": "x", "HOME": "/root"}) == \
        {"a": 1, "b": [True, "$HOME x"], "c": {"d": None, "e": ""}}


# --- OTEL_* variables -------------------------------------------------------------------------------

def test_otel_endpoint_headers_timeout_compression(tmp_path: Path) -> None:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=abc%20def, x-tenant = t1,junk",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2500",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "NONE",
    }
    cfg = load(None, env=env).config
    assert cfg.otlp.endpoint == "http://collector:4317"
    assert cfg.otlp.headers == {"api-key": "abc def", "x-tenant": "t1"}
    assert cfg.otlp.timeout == pytest.approx(2.5)  # milliseconds in the variable
    assert cfg.otlp.compression == "none"
    assert not cfg.console_enabled  # an endpoint turns the console default off


def test_otel_https_endpoint_turns_insecure_off() -> None:
    cfg = load(None, env={"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c.example:4317"}).config
    assert cfg.otlp.insecure is False


def test_otel_traces_endpoint_beats_generic_one() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "b:2"}
    assert load(None, env=env).config.otlp.endpoint == "b:2"


def test_otel_bad_timeout_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        load(None, env={"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"})
    assert list(info.value.problems) == ["otlp.timeout"]


def test_otel_bad_compression_names_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        load(None, env={"OTEL_EXPORTER_OTLP_COMPRESSION": "brotli"})
    assert list(info.value.problems) == ["otlp.compression"]


def test_file_values_win_over_otel_env(tmp_path: Path) -> None:
    text = ("otlp:\n  endpoint: file:4317\n  headers: {a: file}\n  timeout: 3\n  compression: gzip\n"
            "resource:\n  service_name: from-file\n  attributes: {deployment.environment: file}\n")
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "env:4317",
        "OTEL_EXPORTER_OTLP_HEADERS": "a=env,b=env",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1000",
        "OTEL_EXPORTER_OTLP_COMPRESSION": "none",
        "OTEL_SERVICE_NAME": "from-env",
        "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=env,team=obs",
    }
    cfg = load(_write(tmp_path, text), env=env).config
    assert cfg.otlp.endpoint == "file:4317"
    assert cfg.otlp.headers == {"a": "file"}
    assert cfg.otlp.timeout == 3
    assert cfg.otlp.compression == "gzip"
    assert cfg.resource.service_name == "from-file"
    # attributes merge key by key, the file's value winning where both speak
    assert cfg.resource.attributes == {"deployment.environment": "file", "team": "obs"}


def test_otel_resource_attributes_and_service_name() -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=attr-svc,k8s.cluster.name=c%2C1"}
    cfg = load(None, env=env).config
    assert cfg.resource.attributes == {"service.name": "attr-svc", "k8s.cluster.name": "c,1"}
    assert cfg.resource.service_name == "attr-svc"
    env["OTEL_SERVICE_NAME"] = "explicit"  # OTEL_SERVICE_NAME beats service.name in the attributes
    assert load(None, env=env).config.resource.service_name == "explicit"


def test_no_otel_env_keeps_defaults() -> None:
    cfg = load(None, env={}).config
    assert cfg.resource.service_name == "telegen"
    assert cfg.resource.attributes == {}
    assert cfg.otlp.headers == {}


def test_node_name_from_env_unless_set(tmp_path: Path) -> None:
    assert load(None, env={"NODE_NAME": "n1"}).config.node_name == "n1"
    assert load(_write(tmp_path, "node_name: mine\n"), env={"NODE_NAME": "n1"}).config.node_name == "mine"


# --- console_enabled, diff ------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "console", "expected"), [
    ("", None, True),
    ("c:4317", None, False),
    ("c:4317", True, True),
    ("", False, False),
])
def test_console_enabled(endpoint: str, console: bool | None, expected: bool) -> None:
    cfg = Config.model_validate({"otlp": {"endpoint": endpoint}, "export": {"console": {"enabled": console}}})
    assert cfg.console_enabled is expected


def test_diff_lists_changed_leaves() -> None:
    old = Config()
    new = Config.model_validate({
        "log_level": "debug",
        "otlp": {"endpoint": "c:4317", "headers": {"a": "b"}},
        "agent": {"ebpf": {"capture_bytes": 512}},
    })
    assert sorted(diff(old, new)) == ["agent.ebpf.capture_bytes", "log_level", "otlp.endpoint", "otlp.headers"]
    assert diff(old, Config()) == []


def test_diff_reports_header_change_as_one_path() -> None:
    a = Config.model_validate({"otlp": {"headers": {"a": "1", "b": "2"}}})
    b = Config.model_validate({"otlp": {"headers": {"a": "1", "b": "3"}}})
    assert diff(a, b) == ["otlp.headers"]


def test_diff_of_resource_attributes_per_key() -> None:
    a = Config.model_validate({"resource": {"attributes": {"x": "1", "y": "1"}}})
    b = Config.model_validate({"resource": {"attributes": {"x": "1", "y": "2"}}})
    assert diff(a, b) == ["resource.attributes.y"]
