"""Migrations on a real PostgreSQL: idempotent, and plain PostgreSQL gets time_bucket()."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from qjt import db
from qjt.db import MigrationError, load_migrations, migrate

CORE_TABLES = {
    "users",
    "ibm_credentials",
    "ibm_instances",
    "api_keys",
    "jobs",
    "job_events",
    "job_results",
    "backend_config",
    "backend_status",
    "qubit_calibration",
    "gate_calibration",
    "notifications",
}


def schema_snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Columns, constraints, indexes and functions of the public schema."""
    queries = {
        "columns": """SELECT table_name, column_name, data_type, is_nullable, column_default
                      FROM information_schema.columns WHERE table_schema = 'public'
                      ORDER BY 1, 2""",
        "constraints": """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
                          FROM pg_constraint WHERE connamespace = 'public'::regnamespace
                          ORDER BY 1, 2""",
        "indexes": """SELECT tablename, indexname, indexdef FROM pg_indexes
                      WHERE schemaname = 'public' ORDER BY 1, 2""",
        "views": """SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'
                    ORDER BY 1""",
        "functions": """SELECT proname, pg_get_function_identity_arguments(oid), prosrc FROM pg_proc
                        WHERE pronamespace = 'public'::regnamespace ORDER BY 1, 2""",
    }
    with psycopg.connect(url) as conn:
        return {name: conn.execute(sql).fetchall() for name, sql in queries.items()}


def test_migrations_applied_twice_give_the_same_schema(make_database: Callable[[], str]) -> None:
    url = make_database()
    first = migrate(url)
    assert first == [f"{m.version:04d}_{m.name}" for m in load_migrations()]
    after_first = schema_snapshot(url)
    assert {row[0] for row in after_first["columns"]} >= CORE_TABLES

    assert migrate(url) == []
    assert schema_snapshot(url) == after_first


def test_every_migration_file_is_itself_safe_to_run_twice(make_database: Callable[[], str]) -> None:
    url = make_database()
    migrate(url)
    before = schema_snapshot(url)
    with psycopg.connect(url, autocommit=True) as conn:
        for migration in load_migrations():
            conn.execute(migration.sql.encode())
    assert schema_snapshot(url) == before


def test_plain_postgresql_gets_a_timescaledb_compatible_time_bucket(
    make_database: Callable[[], str],
) -> None:
    url = make_database()
    migrate(url)
    if db.has_timescaledb(url):
        pytest.fail("this test checks the plain-PostgreSQL branch; the server has TimescaleDB")
    with psycopg.connect(url) as conn:
        hour, week, five_min = conn.execute(
            """SELECT time_bucket('1 hour', timestamptz '2026-11-04 13:47:12+00'),
                      time_bucket('7 days', timestamptz '2026-11-04 13:47:12+00'),
                      time_bucket('5 minutes', timestamp '2026-11-04 13:47:12')"""
        ).fetchone()  # type: ignore[misc]
    assert hour == datetime(2026, 11, 4, 13, 0, tzinfo=UTC)
    assert week == datetime(2026, 11, 2, tzinfo=UTC)  # a Monday, as TimescaleDB buckets weeks
    assert five_min == datetime(2026, 11, 4, 13, 45)


def test_concurrent_migrations_do_not_collide(make_database: Callable[[], str]) -> None:
    import concurrent.futures

    url = make_database()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: migrate(url), range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(load_migrations())]


def test_an_edited_applied_migration_is_refused(
    make_database: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_database()
    migrate(url)
    edited = tmp_path / "migrations"
    edited.mkdir()
    for migration in load_migrations():
        sql = migration.sql + ("\n-- edited\n" if migration.version == 2 else "")
        (edited / f"{migration.version:04d}_{migration.name}.sql").write_text(sql)
    monkeypatch.setattr(db, "MIGRATIONS_DIR", edited)
    monkeypatch.setattr(db, "load_migrations", lambda directory=edited: load_migrations(directory))
    with pytest.raises(MigrationError, match="0002_core_tables was changed after it was applied"):
        migrate(url)


def test_a_failing_migration_leaves_nothing_half_applied(
    make_database: Callable[[], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = make_database()
    broken = tmp_path / "migrations"
    broken.mkdir()
    (broken / "0001_good.sql").write_text("CREATE TABLE IF NOT EXISTS a (x int);")
    (broken / "0002_bad.sql").write_text("CREATE TABLE b (x int); SELECT no_such_function();")
    monkeypatch.setattr(db, "load_migrations", lambda directory=broken: load_migrations(directory))
    with pytest.raises(MigrationError, match="0002_bad failed"):
        migrate(url)
    with psycopg.connect(url) as conn:
        tables = {
            r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        }
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert "a" in tables and "b" not in tables
    assert versions == [1]


def test_misnamed_migration_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "1_oops.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"'1_oops\.sql' is not named NNNN_name\.sql"):
        load_migrations(tmp_path)
