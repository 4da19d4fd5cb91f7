"""docker-compose.yml, Dockerfile and deploy/ checked without a Docker engine."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from qjt.config import Settings
from qjt.devstack import SERVICES, nats_server_binary

ROOT = Path(__file__).resolve().parents[2]
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES_IN_COMPOSE: dict[str, dict[str, Any]] = COMPOSE["services"]
INFRA = {"timescaledb", "nats-1", "nats-2", "nats-3", "grafana", "prometheus", "migrate"}


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    return {str(k): str(v) for k, v in env.items()}


def internal_port(service: dict[str, Any]) -> int:
    return int(env_of(service)["QJT_HTTP_PORT"])


def test_compose_runs_every_service_and_the_infrastructure() -> None:
    assert set(SERVICES_IN_COMPOSE) == set(SERVICES) | INFRA


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_runs_its_package_from_the_image(name: str) -> None:
    service = SERVICES_IN_COMPOSE[name]
    assert service["build"] == "."
    assert service["command"] == ["python", "-m", f"services.{name}"]
    assert (ROOT / "services" / name / "__main__.py").exists()


@pytest.mark.parametrize("name", SERVICES)
def test_each_service_health_check_probes_its_own_port(name: str) -> None:
    service = SERVICES_IN_COMPOSE[name]
    probe = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{internal_port(service)}/healthz" in probe
    assert env_of(service)["QJT_HTTP_HOST"] == "0.0.0.0"


def test_every_dependency_names_a_defined_service() -> None:
    for name, service in SERVICES_IN_COMPOSE.items():
        for dependency in service.get("depends_on") or {}:
            assert dependency in SERVICES_IN_COMPOSE, f"{name} depends on unknown {dependency}"


def test_services_start_after_migrations_and_the_nats_cluster() -> None:
    for name in set(SERVICES) - {"emulator"}:
        deps = SERVICES_IN_COMPOSE[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert {"nats-1", "nats-2", "nats-3"} <= set(deps), name
    assert SERVICES_IN_COMPOSE["migrate"]["command"] == ["qjt", "migrate"]


def test_published_host_ports_do_not_clash() -> None:
    published = [
        str(port).split(":")[0]
        for service in SERVICES_IN_COMPOSE.values()
        for port in service.get("ports") or []
    ]
    assert len(published) == len(set(published)), published


def test_every_bind_mounted_path_exists_in_the_repo() -> None:
    mounts = [
        volume.split(":")[0]
        for service in SERVICES_IN_COMPOSE.values()
        for volume in service.get("volumes") or []
        if volume.startswith("./")
    ]
    assert mounts, "expected bind mounts for NATS, Grafana and Prometheus config"
    for mount in mounts:
        assert (ROOT / mount).exists(), f"{mount} is mounted but missing"
    named = {
        volume.split(":")[0]
        for service in SERVICES_IN_COMPOSE.values()
        for volume in service.get("volumes") or []
        if not volume.startswith(("./", "/"))
    }
    assert named <= set(COMPOSE["volumes"]), named - set(COMPOSE["volumes"])


def test_every_qjt_variable_is_a_real_setting() -> None:
    fields = {f"QJT_{name.upper()}" for name in Settings.model_fields}
    for name, service in SERVICES_IN_COMPOSE.items():
        for key in env_of(service):
            if key.startswith("QJT_") and name != "grafana":
                assert key in fields, f"{name} sets {key}, which no setting reads"


def test_services_reach_every_nats_node_and_timescaledb() -> None:
    env = env_of(SERVICES_IN_COMPOSE["recorder"])
    for node in ("nats-1", "nats-2", "nats-3"):
        assert f"nats://{node}:4222" in env["QJT_NATS_URL"]
    assert "@timescaledb:5432/qjt" in env["QJT_DATABASE_URL"]
    assert env["QJT_STREAM_REPLICAS"] == "3"
    assert "timescaledb" in SERVICES_IN_COMPOSE["timescaledb"]["image"]


def test_nats_cluster_config_is_valid_for_nats_server(tmp_path: Path) -> None:
    conf = (ROOT / "deploy/nats/nats.conf").read_text().replace("/data/jetstream", str(tmp_path))
    (tmp_path / "nats.conf").write_text(conf)
    result = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(tmp_path / "nats.conf")],
        env={**os.environ, "NATS_SERVER_NAME": "nats-1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    routes = set(re.findall(r"nats-route://([\w-]+):6222", conf))
    assert routes == {"nats-1", "nats-2", "nats-3"}


def test_prometheus_scrapes_every_replica_of_every_service_on_its_metrics_port() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    # DNS discovery (type A) on the compose service name finds every replica.
    targets = {
        f"{name}:{sd['port']}"
        for job in config["scrape_configs"]
        for sd in job["dns_sd_configs"]
        if sd["type"] == "A"
        for name in sd["names"]
    }
    expected = {f"{name}:{internal_port(SERVICES_IN_COMPOSE[name])}" for name in SERVICES}
    assert targets == expected
    [job] = config["scrape_configs"]
    assert {"source_labels": ["__meta_dns_name"], "target_label": "service"} in job[
        "relabel_configs"
    ], "alerts name the service by its `service` label"


def test_promtool_accepts_the_prometheus_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make tools` installs Debian's prometheus package"
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "deploy/prometheus/rules", rules)
    text = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules", str(rules)))
    result = subprocess.run(
        [promtool, "check", "config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout
    assert "SUCCESS" in result.stdout + result.stderr


def test_grafana_provisioning_points_at_the_mounted_dashboards() -> None:
    grafana = SERVICES_IN_COMPOSE["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"])
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/dashboards.yaml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    host_dir = next(host for host, inside in mounts.items() if inside == path)
    dashboards = list((ROOT / host_dir).glob("*.json"))
    assert dashboards, "no dashboards to provision"
    for dashboard in dashboards:
        body = json.loads(dashboard.read_text())
        assert body["uid"] and body["title"] and body["panels"]
    sources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/datasources.yaml").read_text()
    )
    uids = {s["uid"] for s in sources["datasources"]}
    for dashboard in dashboards:
        for panel in json.loads(dashboard.read_text())["panels"]:
            assert panel["datasource"]["uid"] in uids


def test_dockerfile_copies_what_exists_and_installs_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert "pip install ." in dockerfile
