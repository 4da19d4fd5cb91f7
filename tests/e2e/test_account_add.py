"""`qjt account add`: validated against the emulator with the real client, stored encrypted."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from cryptography.fernet import Fernet

from qjt.db import migrate
from qjt.vault import Vault, user_id_for
from services.emulator.accounts import crn_for
from tests.conftest import EmulatorProcess

pytestmark = pytest.mark.e2e
QJT = str(Path(sys.executable).with_name("qjt"))
DEMO_KEY = "qjt-emulator-demo-key"


def run_qjt(args: list[str], token: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [QJT, *args],
        input=token + "\n",
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def env(emulator: EmulatorProcess, make_database: Callable[[], str]) -> dict[str, str]:
    url = make_database()
    migrate(url)
    return {
        **os.environ,
        "QJT_DATABASE_URL": url,
        "QJT_IBM_URL": emulator.url,
        "QJT_FERNET_KEYS": Fernet.generate_key().decode(),
    }


def test_account_add_stores_the_user_encrypted_token_and_instances(env: dict[str, str]) -> None:
    result = run_qjt(["account", "add"], DEMO_KEY, env)
    assert result.returncode == 0, result.stdout + result.stderr
    user_id = user_id_for(DEMO_KEY)
    assert f"registered user {user_id[:12]}" in result.stdout
    assert DEMO_KEY not in result.stdout + result.stderr

    with psycopg.connect(env["QJT_DATABASE_URL"]) as conn:
        (ciphertext,) = conn.execute(
            "SELECT token_ciphertext FROM ibm_credentials WHERE user_id = %s", (user_id,)
        ).fetchone() or (None,)
        instances = conn.execute(
            "SELECT crn, is_private, plan FROM ibm_instances ORDER BY crn"
        ).fetchall()
    assert ciphertext is not None and DEMO_KEY.encode() not in bytes(ciphertext)
    assert Vault([env["QJT_FERNET_KEYS"]]).decrypt(bytes(ciphertext)) == DEMO_KEY
    assert instances == sorted(
        [
            (crn_for("a1b2c3demo", "0001-open", private=False), False, "open"),
            (crn_for("a1b2c3demo", "0002-premium", private=True), True, "premium"),
        ]
    )


def test_account_add_with_a_chosen_instance(env: dict[str, str]) -> None:
    premium = crn_for("a1b2c3demo", "0002-premium", private=True)
    result = run_qjt(["account", "add", "--instance", premium], DEMO_KEY, env)
    assert result.returncode == 0, result.stdout
    with psycopg.connect(env["QJT_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT crn FROM ibm_instances").fetchall() == [(premium,)]


def test_a_token_ibm_refuses_is_a_clear_error_and_stores_nothing(env: dict[str, str]) -> None:
    result = run_qjt(["account", "add"], "wrong-token-123456", env)
    assert result.returncode == 1
    assert "IBM did not accept the token" in result.stdout
    assert "wrong-token-123456" not in result.stdout + result.stderr
    with psycopg.connect(env["QJT_DATABASE_URL"]) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (0,)


def test_an_instance_of_another_account_is_refused(env: dict[str, str]) -> None:
    other = crn_for("d4e5f6second", "0003-team", private=False)
    result = run_qjt(["account", "add", "--instance", other], DEMO_KEY, env)
    assert result.returncode == 1
    assert f"this token cannot use instance(s) {other}" in result.stdout


def test_rotate_keys_re_encrypts_every_token(env: dict[str, str]) -> None:
    assert run_qjt(["account", "add"], DEMO_KEY, env).returncode == 0
    old = env["QJT_FERNET_KEYS"]
    new = Fernet.generate_key().decode()
    rotated = run_qjt(["account", "rotate-keys"], "", {**env, "QJT_FERNET_KEYS": f"{new},{old}"})
    assert (
        rotated.returncode == 0 and "re-encrypted 1 stored token(s) and channel" in rotated.stdout
    )
    with psycopg.connect(env["QJT_DATABASE_URL"]) as conn:
        row = conn.execute("SELECT token_ciphertext FROM ibm_credentials").fetchone()
    assert row is not None and Vault([new]).decrypt(bytes(row[0])) == DEMO_KEY
