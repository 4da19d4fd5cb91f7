"""Prometheus alert rules: valid, behaving as their promtool tests say, on real metric names."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/rules/services.yml"
RULE_TESTS = ROOT / "deploy/prometheus/tests/services_test.yml"
METRIC_MODULES = ("qjt.bus", "services.api.app", "services.poller.__main__",
                  "services.notifier.handlers", "services.recorder.handlers",
                  "services.submitter.__main__")  # fmt: skip


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: `make tools` installs Debian's prometheus package"
    return found


def exported_metrics() -> set[str]:
    for module in METRIC_MODULES:
        importlib.import_module(module)
    return set(REGISTRY._names_to_collectors)


def test_rules_are_valid() -> None:
    run = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr


def test_rule_unit_tests_pass() -> None:
    run = subprocess.run([promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True,
                         text=True, check=False, cwd=RULE_TESTS.parent)  # fmt: skip
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr


def test_every_metric_the_rules_use_is_exported_by_a_service() -> None:
    used = set(re.findall(r"\bqjt_[a-z_]+", RULES.read_text()))
    assert used, "the rules use no qjt_ metric"
    missing = used - exported_metrics()
    assert not missing, f"rules use metrics no service exports: {sorted(missing)}"
