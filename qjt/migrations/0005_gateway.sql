-- What the API gateway and submitter need beyond the poller's and recorder's tables.

-- IBM's usage estimate for a job, given when the job is created (billed time is
-- quantum_seconds, known when it finishes).
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS estimated_usage_seconds double precision;
-- The API's per-user filters, so a filter that matches few (or no) jobs is still an index
-- range, not a walk through everyone's jobs.
CREATE INDEX IF NOT EXISTS jobs_user_status_created ON jobs (user_id, status, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_user_backend_created ON jobs (user_id, backend, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS jobs_user_priority_created ON jobs (user_id, priority, created_at DESC, id DESC);

-- Which backends each instance may use, as the poller saw them (one row per backend
-- per observation; the newest observation of an instance is its current list).
CREATE TABLE IF NOT EXISTS instance_backends (
  instance    text NOT NULL,
  observed_at timestamptz NOT NULL,
  backend     text NOT NULL,
  PRIMARY KEY (instance, observed_at, backend)
);

-- Every instance a registered token can use (found at registration); users enable some
-- of them (ibm_instances) and may enable others later without sending the token again.
CREATE TABLE IF NOT EXISTS ibm_available_instances (
  credential_id bigint NOT NULL REFERENCES ibm_credentials (id) ON DELETE CASCADE,
  crn           text NOT NULL,
  name          text NOT NULL DEFAULT '',
  plan          text NOT NULL DEFAULT '',
  is_private    boolean NOT NULL DEFAULT false,
  PRIMARY KEY (credential_id, crn)
);

-- The gateway's ledger of accepted submit requests: makes Idempotency-Key work and lets
-- a job be read back before the recorder has stored its first event.
CREATE TABLE IF NOT EXISTS submissions (
  job_id          text PRIMARY KEY,
  user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  idempotency_key text,
  request_hash    text NOT NULL,
  primitive       text NOT NULL,
  backend         text NOT NULL,
  instance        text,
  shots           integer,
  num_circuits    integer NOT NULL,
  tags            text[] NOT NULL DEFAULT '{}',
  priority        smallint NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (user_id, idempotency_key)
);

ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS name text NOT NULL DEFAULT '';
