"""The `qjt` command: run the stack, migrate the database, write contract schemas."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qjt import devstack
from qjt.config import get_settings
from qjt.contracts import json_schemas
from qjt.db import MigrationError, has_timescaledb, migrate


def _cmd_up(args: argparse.Namespace) -> int:
    services = tuple(args.services.split(",")) if args.services else devstack.SERVICES
    unknown = sorted(set(services) - set(devstack.SERVICES))
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(devstack.SERVICES)}")
        return 2
    return devstack.up(get_settings(), services=services, ready_timeout_s=args.timeout)


def _cmd_down(_args: argparse.Namespace) -> int:
    return devstack.down(get_settings())


def _cmd_migrate(_args: argparse.Namespace) -> int:
    url = get_settings().database_url
    if not url:
        print("QJT_DATABASE_URL is not set: say which database to migrate")
        return 2
    try:
        applied = migrate(url, progress=print)
    except MigrationError as exc:
        print(f"error: {exc}")
        return 1
    flavour = "TimescaleDB" if has_timescaledb(url) else "plain PostgreSQL (no TimescaleDB)"
    print(f"{len(applied)} migration(s) applied; schema up to date on {flavour}")
    return 0


def _cmd_schema(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    schemas = json_schemas()
    for name, schema in schemas.items():
        (out / f"{name}.json").write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(schemas)} JSON Schemas to {out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qjt", description="Quantum Job Tracker")
    sub = parser.add_subparsers(dest="command", required=True)

    p_up = sub.add_parser("up", help="start NATS, PostgreSQL and every service (foreground)")
    p_up.add_argument("--services", help="comma-separated subset of services to start")
    p_up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    p_up.set_defaults(func=_cmd_up)

    sub.add_parser("down", help="stop a stack started by `qjt up`").set_defaults(func=_cmd_down)
    sub.add_parser("migrate", help="apply database migrations to QJT_DATABASE_URL").set_defaults(
        func=_cmd_migrate
    )
    p_schema = sub.add_parser("schema", help="write JSON Schema of every message")
    p_schema.add_argument("--out", default="docs/schemas", help="output folder")
    p_schema.set_defaults(func=_cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
