-- Core tables (DESIGN.md "Data"). Every statement is safe to run twice.

CREATE TABLE IF NOT EXISTS users (
  id           text PRIMARY KEY,                -- SHA-256 (hex) of the user's IBM token
  display_name text,
  role         text NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'ops')),
  created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS ibm_credentials (
  id               bigserial PRIMARY KEY,
  user_id          text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  channel          text NOT NULL CHECK (channel IN ('ibm_quantum_platform', 'ibm_cloud', 'local')),
  token_ciphertext bytea NOT NULL,              -- Fernet ciphertext; the token itself is never stored
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, channel)
);

-- The instances (CRNs) a credential may use: public and private ("dual service").
CREATE TABLE IF NOT EXISTS ibm_instances (
  credential_id bigint NOT NULL REFERENCES ibm_credentials (id) ON DELETE CASCADE,
  crn           text NOT NULL,
  is_private    boolean NOT NULL DEFAULT false,
  plan          text,
  added_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (credential_id, crn)
);

CREATE TABLE IF NOT EXISTS api_keys (
  id           bigserial PRIMARY KEY,
  user_id      text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  key_hash     text NOT NULL UNIQUE,            -- SHA-256 of the key; the key is shown once
  key_prefix   text NOT NULL,                   -- first characters, to tell keys apart
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_used_at timestamptz,
  revoked_at   timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_user ON api_keys (user_id);

-- Current state of every job (one row per job; the recorder never moves it backwards).
CREATE TABLE IF NOT EXISTS jobs (
  id              text PRIMARY KEY,
  user_id         text NOT NULL,
  ibm_job_id      text UNIQUE,
  backend         text NOT NULL,
  instance        text,
  primitive       text NOT NULL CHECK (primitive IN ('sampler', 'estimator', 'aer')),
  status          text NOT NULL,
  status_rank     smallint NOT NULL,
  shots           integer,
  num_circuits    integer,
  tags            text[] NOT NULL DEFAULT '{}',
  priority        smallint NOT NULL DEFAULT 5,
  error           text,
  created_at      timestamptz NOT NULL,
  submitted_at    timestamptz,
  queued_at       timestamptz,
  running_at      timestamptz,
  finished_at     timestamptz,
  quantum_seconds double precision,
  updated_at      timestamptz NOT NULL DEFAULT now()
);
-- Keyset pagination (created_at DESC, id DESC) under each filter the API offers.
CREATE INDEX IF NOT EXISTS jobs_created         ON jobs (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_user_created    ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_backend_created ON jobs (backend, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_status_created  ON jobs (status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_tags            ON jobs USING gin (tags);

-- Timeline: one row per event (deduplicated by the event's deterministic id).
CREATE TABLE IF NOT EXISTS job_events (
  event_id    text NOT NULL,
  job_id      text NOT NULL,
  event_type  text NOT NULL,
  status      text,
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  payload     jsonb NOT NULL,
  PRIMARY KEY (event_id, occurred_at)
);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, occurred_at);

CREATE TABLE IF NOT EXISTS job_results (
  job_id             text PRIMARY KEY,
  ibm_job_id         text,
  primitive          text NOT NULL,
  counts             jsonb,                     -- Sampler: one {bitstring: count} per circuit
  expectation_values jsonb,                     -- Estimator: one value per circuit
  standard_errors    jsonb,
  metrics            jsonb NOT NULL DEFAULT '{}',
  recorded_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS backend_config (
  backend        text NOT NULL,
  config_hash    text NOT NULL,
  num_qubits     integer NOT NULL,
  basis_gates    text[] NOT NULL,
  max_shots      integer NOT NULL,
  coupling_map   jsonb NOT NULL DEFAULT '[]',
  simulator      boolean NOT NULL DEFAULT false,
  processor_type text,
  observed_at    timestamptz NOT NULL,
  PRIMARY KEY (backend, config_hash)
);

CREATE TABLE IF NOT EXISTS backend_status (
  backend      text NOT NULL,
  observed_at  timestamptz NOT NULL,
  operational  boolean NOT NULL,
  pending_jobs integer NOT NULL,
  status_msg   text NOT NULL DEFAULT '',
  PRIMARY KEY (backend, observed_at)
);

CREATE TABLE IF NOT EXISTS qubit_calibration (
  backend          text NOT NULL,
  calibrated_at    timestamptz NOT NULL,        -- IBM's last_update_date of the snapshot
  qubit            integer NOT NULL,
  t1_us            double precision,
  t2_us            double precision,
  readout_error    double precision,
  frequency_ghz    double precision,
  prob_meas0_prep1 double precision,
  prob_meas1_prep0 double precision,
  PRIMARY KEY (backend, qubit, calibrated_at)
);

CREATE TABLE IF NOT EXISTS gate_calibration (
  backend       text NOT NULL,
  calibrated_at timestamptz NOT NULL,
  gate          text NOT NULL,
  qubits        integer[] NOT NULL,
  error         double precision,
  duration_ns   double precision,
  PRIMARY KEY (backend, gate, qubits, calibrated_at)
);

-- Delivery ledger: one row per notification, so redelivery never posts twice.
CREATE TABLE IF NOT EXISTS notifications (
  id           bigserial PRIMARY KEY,
  dedupe_key   text NOT NULL UNIQUE,
  channel      text NOT NULL,
  kind         text NOT NULL,
  status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
  attempts     integer NOT NULL DEFAULT 0,
  last_error   text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  sent_at      timestamptz
);
