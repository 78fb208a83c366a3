"""Tests for the deployment files: docker-compose.yml, Dockerfile, Prometheus/Grafana, docs.

``docker compose config`` is used where the compose plugin exists; everywhere, a YAML-level
check covers services, images, health checks, restart policies and environment.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from forex_diffusion.market_hours import MarketHours
from streams.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCS = ROOT / "docs" / "operations.md"

FOREXD_SERVICES = ("worker", "retrain-worker", "replay")
#: Services that run the image built from ./Dockerfile.
IMAGE_SERVICES = (*FOREXD_SERVICES, "models-seed")
LONG_RUNNING = ("kafka", "postgres", "prometheus", "alertmanager", "alert-sink", "grafana", "worker", "retrain-worker")
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
ALERTMANAGER = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
REQUIRED_ENV = (
    "FOREXD_BROKER_URL",
    "FOREXD_TOPIC_PREFIX",
    "FOREXD_PARTITIONS",
    "FOREXD_DATABASE_URL",
    "FOREXD_SYMBOLS",
    "FOREXD_TIMEFRAMES",
    "FOREXD_FORECAST_TIMEFRAMES",
    "FOREXD_HORIZON",
    "FOREXD_MODEL_DIR",
    "FOREXD_METRICS_ADDR",
    "FOREXD_METRICS_PORT",
    "FOREXD_DATA_DIR",
    "FOREXD_ALLOWED_LATENESS_MS",
    "FOREXD_KAFKA_SECURITY_PROTOCOL",
    "FOREXD_KAFKA_SASL_MECHANISM",
    "FOREXD_KAFKA_SASL_USERNAME",
    "FOREXD_KAFKA_SASL_PASSWORD",
    "FOREXD_KAFKA_SSL_CAFILE",
)

_VAR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Expand compose-style ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``.

    Defaults may nest (``${A:-x${B:-y}}``); ``$$`` is a literal dollar.
    """
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "{":
            depth, j = 1, i + 2
            while depth:
                if j >= len(text):
                    raise ValueError(f"unbalanced braces in {text!r}")
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                j += 1
            body = text[i + 2 : j - 1]
            name = _VAR.match(body)
            assert name is not None, body
            var, rest = name.group(), body[name.end() :]
            if rest.startswith(":-"):
                value = env.get(var) or interpolate(rest[2:], env)
            elif rest.startswith("-"):
                value = env[var] if var in env else interpolate(rest[1:], env)
            elif rest == "":
                value = env.get(var, "")
            else:
                raise ValueError(f"unsupported expansion ${{{body}}}")
            out.append(value)
            i = j
        else:
            name = _VAR.match(text, i + 1)
            if name is None:
                out.append("$")
                i += 1
            else:
                out.append(env.get(name.group(), ""))
                i = name.end()
    return "".join(out)


def _resolve(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _resolve(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, env) for v in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file with every variable at its default (an empty environment)."""
    return _resolve(raw, {})


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


# ---------------------------------------------------------------------- interpolation helper


def test_interpolate_follows_compose_rules() -> None:
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("${A}-$A-$$A", env) == "1-1-$A"
    assert interpolate("${MISSING:-d}|${EMPTY:-d}|${EMPTY-d}|${MISSING-d}", env) == "d|d||d"
    assert interpolate("${MISSING:-x${B:-y}z}", env) == "xyz"
    assert interpolate("${MISSING:-x${A:-y}z}", env) == "x1z"


# ---------------------------------------------------------------------- compose


def _compose_cli() -> list[str] | None:
    """Return the compose command line available here: the v2 plugin, else v1, else None."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(
    _compose_cli() is None,
    reason="no docker compose CLI here (the docker client has no compose plugin); the YAML-level tests below apply",
)
def test_docker_compose_config_validates() -> None:
    cli = _compose_cli()
    assert cli is not None
    result = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stderr
    # The CLI's own interpolation gives what the YAML-level tests assume.
    rendered = yaml.safe_load(result.stdout)
    assert set(rendered["services"]) >= {"kafka", "worker", "retrain-worker", "replay"}
    env = _env(rendered["services"]["worker"])
    assert env["FOREXD_DATABASE_URL"] == "postgresql+psycopg2://forexd:forexd@postgres:5432/forexd"


def test_compose_defines_the_whole_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "kafka",
        "postgres",
        "prometheus",
        "alertmanager",
        "alert-sink",
        "grafana",
        "models-seed",
        "worker",
        "retrain-worker",
        "replay",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["alertmanager"]["image"].startswith("prom/alertmanager:")
    assert services["alert-sink"]["image"].startswith("python:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    for name, svc in services.items():
        image = svc.get("image", "")
        assert ":" in image, f"{name}: image must carry a tag"
        if name not in IMAGE_SERVICES:
            assert not image.endswith(":latest"), f"{name}: pin third-party images"
    for name in IMAGE_SERVICES:
        assert services[name]["build"] == "." and services[name]["image"] == "forexd:latest"


def test_kafka_runs_in_kraft_mode_without_zookeeper(compose: dict[str, Any], raw: dict[str, Any]) -> None:
    env = _env(compose["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith("1@kafka:")
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "zookeeper" not in COMPOSE.read_text().lower()
    # The broker URL the workers use points at that listener.
    assert _env(compose["services"]["worker"])["FOREXD_BROKER_URL"] == "kafka://kafka:9092"


def test_commands_run_worker_retrain_worker_and_replay_of_bundled_sample(
    compose: dict[str, Any],
) -> None:
    s = compose["services"]
    assert s["worker"]["command"] == ["forexd", "worker"]
    assert s["retrain-worker"]["command"] == ["forexd", "worker", "--role", "retrain"]
    cmd = s["replay"]["command"]
    assert cmd[:2] == ["forexd", "replay"]
    # The default file is the sample bundled in the package (the image copies the source to /app).
    sample = cmd[2].removeprefix("/app/")
    assert sample.startswith("forex_diffusion/bundled/sample/") and (ROOT / sample).is_file(), cmd[2]
    assert cmd[3:] == ["--speed", "60", "--symbol", "EURUSD"]


def test_long_running_services_have_healthchecks_and_restart_policies(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in LONG_RUNNING:
        svc = services[name]
        assert svc.get("restart") in ("unless-stopped", "always"), name
        hc = svc.get("healthcheck")
        assert hc and hc.get("test"), f"{name}: no health check"
        assert hc["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "retries"):
            assert key in hc, f"{name}: healthcheck without {key}"
    # The replay and seed jobs end; they are restarted only when they fail, and the image's
    # /metrics health check (they serve none) is switched off.
    for job in ("replay", "models-seed"):
        assert services[job]["restart"].startswith("on-failure"), job
        assert services[job]["healthcheck"] == {"disable": True}, job


def test_dependencies_wait_for_health_of_services_that_define_it(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], f"{name}: {dep} has no health check"
    for name in ("worker", "retrain-worker"):
        deps = services[name]["depends_on"]
        assert deps["kafka"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"


def test_forexd_services_are_configured_only_through_forexd_environment(
    compose: dict[str, Any],
    raw: dict[str, Any],
) -> None:
    for name in FOREXD_SERVICES:
        env = _env(compose["services"][name])
        missing = [v for v in REQUIRED_ENV if v not in env]
        assert not missing, f"{name}: missing {missing}"
        assert all(k.startswith("FOREXD_") for k in env), name
        assert env["FOREXD_DATABASE_URL"] == "postgresql+psycopg2://forexd:forexd@postgres:5432/forexd"
        assert env["FOREXD_METRICS_PORT"] == "9464"
        # No secret is written into the file: the password comes from the environment.
        raw_env = raw["services"][name]["environment"]
        assert raw_env["FOREXD_KAFKA_SASL_PASSWORD"].startswith("${")
        assert env["FOREXD_KAFKA_SASL_PASSWORD"] == ""


def test_environment_overrides_reach_the_workers(raw: dict[str, Any]) -> None:
    url = "postgresql+psycopg2://forexd:s3cret@postgres:5432/forexd"
    resolved = _resolve(
        raw,
        {
            "FOREXD_SYMBOLS": "EURUSD",
            "POSTGRES_PASSWORD": "s3cret",
            "FOREXD_DATABASE_URL": url,
            "REPLAY_FILE": "/app/data/sample/other.csv",
        },
    )
    env = _env(resolved["services"]["worker"])
    assert env["FOREXD_SYMBOLS"] == "EURUSD"
    assert env["FOREXD_DATABASE_URL"] == url
    assert _env(resolved["services"]["postgres"])["POSTGRES_PASSWORD"] == "s3cret"
    assert resolved["services"]["replay"]["command"][2] == "/app/data/sample/other.csv"


def test_worker_settings_accept_the_compose_environment(compose: dict[str, Any]) -> None:
    settings_mod = pytest.importorskip("streams.settings")
    for name in FOREXD_SERVICES:
        settings = settings_mod.Settings.from_env(_env(compose["services"][name]))
        assert settings.metrics_addr == "0.0.0.0" and settings.metrics_port == 9464
        assert settings.broker_url == "kafka://kafka:9092"


def test_host_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} exposed beyond loopback"
    for name in IMAGE_SERVICES:
        assert "ports" not in compose["services"][name], f"{name}: metrics must stay internal"


def test_bind_mounts_point_at_files_in_the_repository(compose: dict[str, Any]) -> None:
    mounts = [
        v.split(":")[0] for svc in compose["services"].values() for v in svc.get("volumes", []) if v.startswith("./")
    ]
    assert mounts
    for m in mounts:
        assert (ROOT / m).exists(), m
    named = {
        v.split(":")[0]
        for svc in compose["services"].values()
        for v in svc.get("volumes", [])
        if not v.startswith(("./", "/"))
    }
    assert named <= set(compose["volumes"])


# ---------------------------------------------------------------------- prometheus / grafana


def test_prometheus_scrapes_both_workers_on_their_metrics_port(compose: dict[str, Any]) -> None:
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {t for job in cfg["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    port = _env(compose["services"]["worker"])["FOREXD_METRICS_PORT"]
    assert {f"worker:{port}", f"retrain-worker:{port}"} <= targets
    for rule_file in cfg["rule_files"]:
        assert (ROOT / "deploy/prometheus" / Path(rule_file).name).is_file()


def test_grafana_provisioning_matches_mounts(compose: dict[str, Any]) -> None:
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    prov = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/forexd.yml").read_text())
    path = prov["providers"][0]["options"]["path"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/dashboards"] == path
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert list((ROOT / "deploy/grafana/dashboards").glob("*.json"))


# ---------------------------------------------------------------------- the model served


def _load_script(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_workers_start_after_the_bundled_models_are_seeded_into_their_model_dir(compose: dict[str, Any]) -> None:
    s = compose["services"]
    seed = s["models-seed"]
    script = seed["command"][1]
    mounts = dict(v.split(":")[:2] for v in seed["volumes"])
    # the script is the repository's, mounted read-only where the command runs it
    (host,) = [h for h, c in mounts.items() if script.startswith(c + "/")]
    assert (ROOT / host / Path(script).name).is_file()
    model_dir = _env(seed)["FOREXD_MODEL_DIR"]
    for name in ("worker", "retrain-worker"):
        assert _env(s[name])["FOREXD_MODEL_DIR"] == model_dir
        assert s[name]["depends_on"]["models-seed"]["condition"] == "service_completed_successfully"
        # the seed writes on the volume the workers read their model directory from
        (vol,) = [v for v in s[name]["volumes"] if model_dir.startswith(v.split(":")[1])]
        assert vol in seed["volumes"]


def test_seed_copies_missing_models_only_and_the_model_book_then_serves_the_bundled_model(tmp_path: Path) -> None:
    from forex_diffusion.bundled import MODELS
    from retraining.serving import ModelBook

    seed = _load_script(ROOT / "deploy" / "worker" / "seed_models.py")
    target = tmp_path / "models"
    bundled = sorted(p.relative_to(MODELS) for p in MODELS.glob("*/*") if p.suffix in (".pt", ".json"))
    assert any(p.suffix == ".pt" for p in bundled)
    copied = seed.seed(MODELS, target)
    assert sorted(p.relative_to(target) for p in copied) == bundled
    for rel in bundled:
        assert (target / rel).read_bytes() == (MODELS / rel).read_bytes()
    assert not list(target.rglob(".*.tmp"))
    # a second start copies nothing and never overwrites what is there
    first = target / bundled[0]
    first.write_bytes(b"kept")
    assert seed.seed(MODELS, target) == []
    assert first.read_bytes() == b"kept"
    first.write_bytes((MODELS / bundled[0]).read_bytes())
    # what compose serves: the bundled 1m EURUSD model at the default horizon, not the random walk
    (pt,) = (target / "EURUSD-1m-h24").glob("*.pt")
    book = ModelBook(None, horizon=24, model_dir=target)
    pred = book.predictor("EURUSD", "1m")
    assert pred.version == pt.stem != "rw-ewma"


def test_seed_script_needs_a_model_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    seed = _load_script(ROOT / "deploy" / "worker" / "seed_models.py")
    monkeypatch.delenv("FOREXD_MODEL_DIR", raising=False)
    assert seed.main(["seed_models.py"]) == 2
    assert "FOREXD_MODEL_DIR" in capsys.readouterr().err
    monkeypatch.setenv("FOREXD_MODEL_DIR", str(tmp_path / "m"))
    assert seed.main(["seed_models.py"]) == 0
    assert "EURUSD-1m-h24/" in capsys.readouterr().out


# ---------------------------------------------------------------------- alerts


def _rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"]}


def test_prometheus_sends_alerts_to_the_compose_alertmanager(compose: dict[str, Any]) -> None:
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (am,) = cfg["alerting"]["alertmanagers"]
    (target,) = [t for sc in am["static_configs"] for t in sc["targets"]]
    host, port = target.split(":")
    svc = compose["services"][host]
    assert svc["image"].startswith("prom/alertmanager:")
    assert f"127.0.0.1:{port}:{port}" in svc["ports"]
    mounts = dict(v.split(":")[:2] for v in svc["volumes"] if v.startswith("./"))
    config_flag = next(c for c in svc["command"] if c.startswith("--config.file="))
    config_path = Path(config_flag.split("=", 1)[1])
    assert mounts["./deploy/alertmanager"] == str(config_path.parent)
    assert (ALERTMANAGER.parent / config_path.name).is_file()


def test_alertmanager_routes_every_rule_by_severity_to_a_documented_receiver(compose: dict[str, Any]) -> None:
    cfg = yaml.safe_load(ALERTMANAGER.read_text())
    rules = _rules()
    assert len(rules) == 9
    severities = {r["labels"]["severity"] for r in rules.values()}
    assert severities == {"critical", "warning"}
    receivers = {r["name"]: r for r in cfg["receivers"]}
    assert receivers[cfg["route"]["receiver"]] == {"name": "null"}  # unlabelled alerts are dropped
    routed = {}
    for route in cfg["route"]["routes"]:
        (matcher,) = route["matchers"]
        m = re.fullmatch(r'severity="(\w+)"', matcher)
        assert m, matcher
        routed[m.group(1)] = route["receiver"]
    assert set(routed) == severities
    sink = compose["services"]["alert-sink"]
    sink_port = sink["command"][-1]
    for severity, name in routed.items():
        hooks = receivers[name]["webhook_configs"]
        assert hooks, severity
        for hook in hooks:
            assert hook["url"].startswith(f"http://alert-sink:{sink_port}/"), hook
            assert hook["send_resolved"] is True
    # every severity's receiver is named in the operations guide
    doc = DOCS.read_text()
    assert "deploy/alertmanager/alertmanager.yml" in doc and "alert-sink" in doc


@pytest.mark.skipif(
    shutil.which("amtool") is None, reason="amtool (Alertmanager) not installed here; the structural test above applies"
)
def test_amtool_accepts_the_config_and_routes_by_severity() -> None:
    ok = subprocess.run(["amtool", "check-config", str(ALERTMANAGER)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for severity in ("critical", "warning"):
        r = subprocess.run(
            [
                "amtool",
                "config",
                "routes",
                "test",
                f"--config.file={ALERTMANAGER}",
                "alertname=ForexdFeedStale",
                f"severity={severity}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.stdout.strip() == severity, r.stdout + r.stderr


def test_webhook_sink_logs_one_line_per_alert() -> None:
    import threading
    import urllib.request
    from contextlib import redirect_stdout
    from http.server import HTTPServer
    from io import StringIO

    sink = _load_script(ROOT / "deploy" / "alertmanager" / "webhook_sink.py")
    payload = {
        "receiver": "warning",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "ForexdFeedStale", "severity": "warning", "symbol": "EURUSD"},
                "annotations": {"summary": "No tick for EURUSD"},
            },
            {
                "status": "resolved",
                "labels": {"alertname": "ForexdCircuitOpen", "severity": "critical", "dependency": "database"},
                "annotations": {},
            },
        ],
    }
    server = HTTPServer(("127.0.0.1", 0), sink._Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    out = StringIO()
    with redirect_stdout(out):
        thread.start()
        try:
            url = f"http://127.0.0.1:{server.server_port}"
            assert urllib.request.urlopen(url + "/", timeout=10).read() == b"ok\n"  # the health check
            req = urllib.request.Request(
                url + "/warning", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
            )
            assert urllib.request.urlopen(req, timeout=10).status == 200
        finally:
            server.shutdown()
            server.server_close()
    assert out.getvalue().splitlines() == [
        "alert receiver=warning status=firing alertname=ForexdFeedStale severity=warning symbol=EURUSD "
        'summary="No tick for EURUSD"',
        "alert receiver=warning status=resolved alertname=ForexdCircuitOpen severity=critical "
        'dependency=database summary=""',
    ]


# FX trades from Sunday 17:00 to Friday 17:00 New York: 21:00 (summer) or 22:00 (winter) UTC.
_WIDEST_WEEKEND = MarketHours(closes="Fri 21:00", opens="Sun 22:00")
_NARROWEST_WEEKEND = MarketHours(closes="Fri 22:00", opens="Sun 21:00")


def _market_gate(expr: str) -> str:
    """The time condition of a rule (``... and on () (<gate>)``) as a Python expression.

    Each term is a label-less instant vector (``day_of_week()``, ``hour()`` of ``time()``):
    a comparison keeps or drops its one sample and ``and``/``or`` intersect and unite, so
    the condition holds exactly when the boolean reading of the terms does.
    """
    head, sep, gate = expr.partition("and on ()")
    assert sep, expr
    allowed = re.fullmatch(r"[\s()<>=!0-9]*(?:(?:day_of_week\(\)|hour\(\)|and|or)[\s()<>=!0-9]*)*", gate)
    assert allowed, f"unexpected PromQL in the market-hours gate: {gate!r}"
    return " ".join(gate.replace("day_of_week()", "dow").replace("hour()", "hour").split())


def test_feed_stale_rule_is_silent_over_the_fx_weekend_and_alerts_in_the_week() -> None:
    rule = _rules()["ForexdFeedStale"]
    expr = rule["expr"]
    assert re.match(r"\s*max by \(symbol\) \(forexd_feed_staleness_seconds\) > \d+", expr)
    gate = _market_gate(expr)
    monday = datetime(2014, 5, 5, tzinfo=UTC)  # any week: the gate only reads UTC weekday and hour
    silent, alerting = [], []
    for h in range(7 * 24):
        t = monday + timedelta(hours=h, minutes=30)
        ts_ms = int(t.timestamp() * 1000)
        dow = (t.weekday() + 1) % 7  # PromQL: 0 = Sunday
        on = eval(gate, {"__builtins__": {}}, {"dow": dow, "hour": t.hour})  # noqa: S307 - checked above
        (alerting if on else silent).append(t)
        # never while the market may be closed in either season (the widest weekend) ...
        if _WIDEST_WEEKEND.is_closed(ts_ms):
            assert not on, f"ForexdFeedStale can fire at {t:%a %H:%M} UTC, when FX is closed"
        # ... and always while it is open in both, except the hour of grace after the open
        elif not _NARROWEST_WEEKEND.is_closed(ts_ms) and not (dow == 0 and t.hour == 22):
            assert on, f"ForexdFeedStale is silent at {t:%a %H:%M} UTC, when FX is open"
    assert len(silent) == 3 + 24 + 23  # Friday 21:00 to Sunday 23:00 UTC
    assert "FX" in rule["annotations"]["description"] or "weekend" in rule["annotations"]["description"]


@pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool (Prometheus) not installed here; the structural tests above apply",
)
def test_promtool_accepts_config_and_rules_and_passes_the_rule_unit_tests(tmp_path: Path) -> None:
    def run(*args: str) -> None:
        r = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert r.returncode == 0, r.stdout + r.stderr

    run("check", "rules", str(RULES))
    # the config names its rule file by its path in the container: check a copy that points here
    cfg = (ROOT / "deploy/prometheus/prometheus.yml").read_text().replace("/etc/prometheus/", f"{RULES.parent}/")
    (tmp_path / "prometheus.yml").write_text(cfg)
    run("check", "config", str(tmp_path / "prometheus.yml"))
    # eval times on a Friday evening, Saturday, Sunday before and after the grace hour, Monday
    run("test", "rules", str(ROOT / "deploy/prometheus/tests/rules_test.yml"))


# ---------------------------------------------------------------------- Dockerfile


def test_dockerfile_installs_cpu_torch_then_package_with_broker_extra() -> None:
    text = (ROOT / "Dockerfile").read_text()
    torch = text.index("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    pkg = text.index('pip install ".[broker]"')
    assert torch < pkg
    assert re.search(r"^USER \S+", text, re.M), "run unprivileged"
    assert "COPY forex_diffusion ./forex_diffusion" in text  # the bundled sample and models ride along
    assert re.search(r'^CMD \["forexd", "worker"\]', text, re.M)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and ".env" in ignored
    assert "data" not in ignored and "README.md" not in ignored


# ---------------------------------------------------------------------- docs


def test_operations_doc_lists_every_environment_variable_and_metric(
    raw: dict[str, Any],
) -> None:
    doc = DOCS.read_text()
    used = set(re.findall(r"\bFOREXD_[A-Z_]+\b", COMPOSE.read_text()))
    used |= set(REQUIRED_ENV)
    undocumented = sorted(v for v in used if f"`{v}`" not in doc)
    assert not undocumented, undocumented
    compose_vars = set(re.findall(r"\$\{([A-Z_]+)", COMPOSE.read_text())) - used
    assert not sorted(v for v in compose_vars if f"`{v}`" not in doc)
    families = [f for f in Metrics(["EURUSD"]).registry.collect()]
    for fam in families:
        shown = f"{fam.name}_total" if fam.type == "counter" else fam.name
        assert f"`{shown}`" in doc, shown


def test_operations_doc_covers_every_settings_field() -> None:
    settings_mod = pytest.importorskip("streams.settings")
    from dataclasses import fields

    doc = DOCS.read_text()
    missing = [
        f"FOREXD_{f.name.upper()}" for f in fields(settings_mod.Settings) if f"`FOREXD_{f.name.upper()}`" not in doc
    ]
    assert not missing, missing


def test_operations_doc_lists_exactly_the_reject_reasons() -> None:
    from forex_diffusion.errors import RejectReason

    doc = DOCS.read_text()
    m = re.search(r"`forex_diffusion\.errors\.RejectReason` \(([^)]*)\)", doc)
    assert m, "the reason list of the metrics section"
    listed = re.findall(r"`(\w+)`", m.group(1))
    assert sorted(listed) == sorted(r.value for r in RejectReason)


def test_operations_doc_cites_no_file_outside_the_repository() -> None:
    doc = DOCS.read_text()
    assert "RELIABILITY.md" not in doc and "../shared" not in doc
    for path in set(re.findall(r"`((?:deploy|docs|tests|forex_diffusion|streams|retraining)/[\w./-]+)`", doc)):
        assert (ROOT / path).exists(), path
