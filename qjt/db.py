"""PostgreSQL: the connection pool and the one migration runner.

Migrations are the ordered `qjt/migrations/NNNN_name.sql` files. Each is applied once,
in its own transaction, and recorded in `schema_migrations` with a checksum; an advisory
lock lets several replicas start at once. Every file is also written to be safe to run
twice on its own (IF NOT EXISTS, CREATE OR REPLACE), so a half-known database converges.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_LOCK_KEY = 0x716A74  # "qjt": serialises concurrent `qjt migrate` runs


class MigrationError(RuntimeError):
    """A migration could not be applied, or an applied one was changed afterwards."""


@dataclass(frozen=True)
class Migration:
    """One ordered SQL file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every `NNNN_name.sql` in order; a misnamed or duplicate-numbered file is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", path.name)
        if not match:
            raise MigrationError(f"migration file {path.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migrations numbered {version:04d}")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[v] for v in sorted(found)]


def migrate(url: str, *, progress: Callable[[str], None] | None = None) -> list[str]:
    """Apply every migration not yet applied; return the names applied now."""
    say = progress or (lambda _line: None)
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                     version    integer PRIMARY KEY,
                     name       text NOT NULL,
                     checksum   text NOT NULL,
                     applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                row[0]: row[1]
                for row in conn.execute("SELECT version, checksum FROM schema_migrations")
            }
            for migration in load_migrations():
                label = f"{migration.version:04d}_{migration.name}"
                if migration.version in done:
                    if done[migration.version] != migration.checksum:
                        raise MigrationError(
                            f"migration {label} was changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                say(f"applying migration {label}")
                try:
                    with conn.transaction():
                        conn.execute(migration.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum) "
                            "VALUES (%s, %s, %s)",
                            (migration.version, migration.name, migration.checksum),
                        )
                except psycopg.Error as exc:
                    raise MigrationError(f"migration {label} failed: {exc}") from exc
                applied_now.append(label)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def has_timescaledb(url: str) -> bool:
    """Whether the database runs the TimescaleDB extension."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')"
        ).fetchone()
    return bool(row and row[0])


def with_database(url: str, dbname: str) -> str:
    """The same server address with another database name."""
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def database_name(url: str) -> str:
    """The database a URL names."""
    return str(conninfo_to_dict(url).get("dbname") or "postgres")


def create_database(url: str) -> bool:
    """Create the database `url` names if it does not exist; True if it was created."""
    name = database_name(url)
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists:
            return False
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return True


def drop_database(url: str) -> None:
    """Drop the database `url` names, disconnecting anyone still in it."""
    name = database_name(url)
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def reachable(url: str, timeout_s: float = 2.0) -> bool:
    """Whether a PostgreSQL server answers at `url` (its `postgres` database)."""
    try:
        with psycopg.connect(
            with_database(url, "postgres"), connect_timeout=max(1, int(timeout_s))
        ):
            return True
    except psycopg.Error:
        return False


def open_pool(url: str, max_size: int = 10, *, autocommit: bool = False) -> AsyncConnectionPool:
    """An async pool; open it with `await pool.open()` inside the event loop.

    `autocommit` connections run each statement on its own (no BEGIN/COMMIT round trips
    around a read); `conn.transaction()` still groups writes.
    """
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=max_size,
        open=False,
        name="qjt",
        kwargs={"autocommit": autocommit},
        # A server restart leaves dead connections in the pool: check before handing out.
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=3600,
    )
