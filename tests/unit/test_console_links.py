"""The console's links to Grafana reach dashboards that exist, on the page's backend."""

from __future__ import annotations

import json
from pathlib import Path

from services.api.console.routes import GRAFANA, grafana_link

DASHBOARDS = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"


def test_every_page_links_to_a_provisioned_dashboard() -> None:
    uids = {json.loads(f.read_text())["uid"] for f in DASHBOARDS.glob("*.json")}
    for page in ("dashboard", "jobs", "job", "backend", "analytics"):
        link = grafana_link("https://grafana.example/", page, None)
        assert link is not None and link.startswith("https://grafana.example/d/")
        assert link.removeprefix("https://grafana.example/d/") in uids, page
    assert set(GRAFANA.values()) <= uids


def test_backend_pages_open_the_dashboard_on_their_backend() -> None:
    link = grafana_link("http://grafana.test", "analytics", "ibm_kyiv")
    assert link == "http://grafana.test/d/qjt-backend-analytics?var-backend=ibm_kyiv"
    variables = json.loads((DASHBOARDS / "backend-analytics.json").read_text())["templating"]
    assert "backend" in {v["name"] for v in variables["list"]}


def test_no_grafana_url_means_no_link() -> None:
    assert grafana_link(None, "dashboard", None) is None
    assert grafana_link("http://grafana.test", "login", None) is None
