"""Emulated IBM Cloud accounts: API keys, their instances (CRNs), what each instance sees.

The built-in set gives two accounts so tenancy and "dual service" (a public and a
private instance) can be shown without configuration. `QJT_EMULATOR_ACCOUNTS_FILE`
replaces it with a JSON file of the same shape as `DEMO_ACCOUNTS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEMO_ACCOUNTS: dict[str, Any] = {
    "accounts": [
        {
            "id": "a1b2c3demo",
            "api_key": "qjt-emulator-demo-key",
            "instances": [
                {
                    "name": "open-instance",
                    "guid": "0001-open",
                    "plan": "open",
                    "pricing_type": "free",
                    "private": False,
                    "usage_limit_seconds": 600,
                    "backends": [
                        "ibm_kyiv",
                        "ibm_sherbrooke",
                        "ibm_brisbane",
                        "ibmq_manila",
                        "ibmq_lima",
                        "ibm_nairobi",
                        "ibmq_guadalupe",
                    ],
                },
                {
                    "name": "premium-instance",
                    "guid": "0002-premium",
                    "plan": "premium",
                    "pricing_type": "paid",
                    "private": True,
                    "usage_limit_seconds": None,
                    "backends": "*",
                },
            ],
        },
        {
            "id": "d4e5f6second",
            "api_key": "qjt-emulator-second-key",
            "instances": [
                {
                    "name": "team-instance",
                    "guid": "0003-team",
                    "plan": "standard",
                    "pricing_type": "paygo",
                    "private": False,
                    "usage_limit_seconds": 3600,
                    "backends": ["ibm_torino", "ibm_fez", "ibm_quebec", "ibmq_manila"],
                },
            ],
        },
    ]
}


@dataclass(frozen=True)
class Instance:
    """One IBM Quantum service instance."""

    crn: str
    name: str
    plan: str
    pricing_type: str
    private: bool
    backends: tuple[str, ...]
    usage_limit_seconds: float | None
    account_id: str

    @property
    def plan_id(self) -> str:
        return f"plan-{self.plan}"


@dataclass
class Accounts:
    """API keys → account ids → instances."""

    by_key: dict[str, str] = field(default_factory=dict)
    instances: dict[str, list[Instance]] = field(default_factory=dict)

    def account_for_key(self, api_key: str) -> str | None:
        return self.by_key.get(api_key)

    def instances_of(self, account_id: str) -> list[Instance]:
        return self.instances.get(account_id, [])

    def instance(self, account_id: str, crn: str) -> Instance | None:
        return next((i for i in self.instances_of(account_id) if i.crn == crn), None)

    def plans(self) -> dict[str, Instance]:
        return {i.plan_id: i for group in self.instances.values() for i in group}


def crn_for(account_id: str, guid: str, private: bool) -> str:
    """A CRN in IBM's format (the client reads the region from its sixth field)."""
    visibility = "private" if private else "public"
    return f"crn:v1:bluemix:{visibility}:quantum-computing:us-east:a/{account_id}:{guid}::"


def load_accounts(path: str | None, all_backends: list[str]) -> Accounts:
    """Accounts from a JSON file, or the built-in demo set."""
    data = json.loads(Path(path).read_text()) if path else DEMO_ACCOUNTS
    accounts = Accounts()
    known = set(all_backends)
    for account in data["accounts"]:
        account_id = str(account["id"])
        accounts.by_key[str(account["api_key"])] = account_id
        group = []
        for spec in account["instances"]:
            names = all_backends if spec["backends"] == "*" else list(spec["backends"])
            unknown = sorted(set(names) - known)
            if unknown:
                raise ValueError(f"instance {spec['name']!r} lists unknown backends: {unknown}")
            group.append(
                Instance(
                    crn=spec.get("crn") or crn_for(account_id, spec["guid"], bool(spec["private"])),
                    name=spec["name"],
                    plan=spec["plan"],
                    pricing_type=spec["pricing_type"],
                    private=bool(spec["private"]),
                    backends=tuple(names),
                    usage_limit_seconds=spec.get("usage_limit_seconds"),
                    account_id=account_id,
                )
            )
        accounts.instances[account_id] = group
    return accounts
