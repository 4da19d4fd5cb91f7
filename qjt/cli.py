"""The `qjt` command: run the stack, migrate the database, write contract schemas."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from qjt import devstack
from qjt.accounts import RegistrationError, register, rotate_keys, set_role
from qjt.config import get_settings
from qjt.contracts import json_schemas
from qjt.db import MigrationError, has_timescaledb, migrate
from qjt.vault import Vault, VaultError


def _cmd_up(args: argparse.Namespace) -> int:
    services = tuple(args.services.split(",")) if args.services else devstack.SERVICES
    unknown = sorted(set(services) - set(devstack.SERVICES))
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)}; known: {', '.join(devstack.SERVICES)}")
        return 2
    return devstack.up(
        get_settings(), services=services, ready_timeout_s=args.timeout, demo=not args.no_demo
    )


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


def _read_token() -> str:
    """The IBM token from a prompt (terminal) or standard input (pipe); never from argv."""
    if sys.stdin.isatty():
        return getpass.getpass("IBM Quantum API token (input hidden): ")
    return sys.stdin.readline()


def _cmd_account_add(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.database_url:
        print("QJT_DATABASE_URL is not set: say which database stores accounts")
        return 2
    try:
        vault = Vault.from_settings(settings)
        registration = register(
            settings.database_url,
            vault,
            _read_token(),
            channel=args.channel,
            instances=args.instance,
            settings=settings,
        )
    except (VaultError, RegistrationError) as exc:
        print(f"error: {exc}")
        return 1
    print(f"registered user {registration.user_id[:12]}… on {registration.channel}")
    for instance in registration.instances:
        kind = "private" if instance.private else "public"
        print(f"  {instance.name or instance.crn}  ({instance.plan}, {kind})  {instance.crn}")
    return 0


def _cmd_account_rotate(_args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.database_url:
        print("QJT_DATABASE_URL is not set")
        return 2
    try:
        count = rotate_keys(settings.database_url, Vault.from_settings(settings))
    except VaultError as exc:
        print(f"error: {exc}")
        return 1
    print(f"re-encrypted {count} stored token(s) and channel secret(s) with the newest key")
    return 0


def _cmd_account_role(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.database_url:
        print("QJT_DATABASE_URL is not set")
        return 2
    try:
        set_role(settings.database_url, args.user_id, args.role)
    except RegistrationError as exc:
        print(f"error: {exc}")
        return 1
    print(f"user {args.user_id[:12]}… now has the {args.role} role")
    return 0


def _cmd_grafana_export(args: argparse.Namespace) -> int:
    from qjt import grafana  # noqa: PLC0415 (grafana-client only when needed)

    for path in grafana.export(Path(args.out)):
        print(f"wrote {path}")
    return 0


def _cmd_grafana_provision(args: argparse.Namespace) -> int:
    from qjt import grafana  # noqa: PLC0415

    settings = get_settings()
    url = args.url or settings.grafana_url
    if not url:
        print("error: no Grafana address: pass --url or set QJT_GRAFANA_URL")
        return 2
    token = settings.grafana_token.get_secret_value() if settings.grafana_token else None
    database = None
    if args.database_host:
        database = {"host": args.database_host, "user": args.database_user,
                    "dbname": args.database_name,
                    "password": os.environ.get("QJT_GRAFANA_DB_PASSWORD", "")}  # fmt: skip
    try:
        done = grafana.provision(url, token, database, args.prometheus_url if database else None)
    except grafana.GrafanaError as exc:
        print(f"error: {exc}")
        return 1
    for line in done:
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qjt", description="Quantum Job Tracker")
    sub = parser.add_subparsers(dest="command", required=True)

    p_up = sub.add_parser("up", help="start NATS, PostgreSQL and every service (foreground)")
    p_up.add_argument("--services", help="comma-separated subset of services to start")
    p_up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    p_up.add_argument("--no-demo", action="store_true", help="skip the demo job on the emulator")
    p_up.set_defaults(func=_cmd_up)

    sub.add_parser("down", help="stop a stack started by `qjt up`").set_defaults(func=_cmd_down)
    sub.add_parser("migrate", help="apply database migrations to QJT_DATABASE_URL").set_defaults(
        func=_cmd_migrate
    )
    p_account = sub.add_parser(
        "account", help="IBM accounts (tokens are read from a prompt or stdin)"
    )
    account_sub = p_account.add_subparsers(dest="account_command", required=True)
    p_add = account_sub.add_parser("add", help="validate an IBM token and store it encrypted")
    p_add.add_argument(
        "--channel", default="ibm_quantum_platform", choices=["ibm_quantum_platform", "ibm_cloud"]
    )
    p_add.add_argument(
        "--instance",
        action="append",
        metavar="CRN",
        help="instance to use (repeatable); default: all",
    )
    p_add.set_defaults(func=_cmd_account_add)
    account_sub.add_parser(
        "rotate-keys", help="re-encrypt stored tokens with the newest QJT_FERNET_KEYS key"
    ).set_defaults(func=_cmd_account_rotate)

    p_role = account_sub.add_parser(
        "set-role", help="give a user the ops role (sees every job) or back to user"
    )
    p_role.add_argument("user_id", help="the user's id (SHA-256 of their IBM token)")
    p_role.add_argument("role", choices=["user", "ops"])
    p_role.set_defaults(func=_cmd_account_role)

    p_grafana = sub.add_parser("grafana", help="Grafana dashboards: export to files or push")
    grafana_sub = p_grafana.add_subparsers(dest="grafana_command", required=True)
    p_export = grafana_sub.add_parser("export", help="write the dashboards' JSON files")
    p_export.add_argument("--out", default="deploy/grafana/dashboards", help="output folder")
    p_export.set_defaults(func=_cmd_grafana_export)
    p_push = grafana_sub.add_parser(
        "provision", help="push the dashboards (and data sources) to a running Grafana"
    )
    p_push.add_argument("--url", help="Grafana's address (default: QJT_GRAFANA_URL)")
    p_push.add_argument("--database-host", help="PostgreSQL host:port as Grafana reaches it "
                        "(creates the data sources if missing; password from "
                        "QJT_GRAFANA_DB_PASSWORD)")  # fmt: skip
    p_push.add_argument("--database-user", default="qjt")
    p_push.add_argument("--database-name", default="qjt")
    p_push.add_argument("--prometheus-url", default="http://prometheus:9090")
    p_push.set_defaults(func=_cmd_grafana_provision)

    p_schema = sub.add_parser("schema", help="write JSON Schema of every message")
    p_schema.add_argument("--out", default="docs/schemas", help="output folder")
    p_schema.set_defaults(func=_cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
