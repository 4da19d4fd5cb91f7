-- The notifier: where people want to hear about jobs and backends, and what it has sent.

-- A destination: a Slack incoming webhook, a Slack bot token and channel, or a generic
-- outbound webhook. URLs, bot tokens and signing secrets are stored Fernet-encrypted.
CREATE TABLE IF NOT EXISTS notification_channels (
  id                bigserial PRIMARY KEY,
  user_id           text NOT NULL,
  kind              text NOT NULL CHECK (kind IN ('slack_webhook', 'slack_bot', 'webhook')),
  name              text NOT NULL DEFAULT '',
  scope             text NOT NULL DEFAULT 'mine' CHECK (scope IN ('mine', 'all')),
  events            text[] NOT NULL,
  backends          text[] NOT NULL DEFAULT '{}',
  target_ciphertext bytea NOT NULL,
  target_hint       text NOT NULL,
  slack_channel     text,
  secret_ciphertext bytea,
  status            text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'failing')),
  failure           text,
  created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS notification_channels_user ON notification_channels (user_id);

-- The delivery ledger gains what a retry needs: the rendered body, when to try next, and a
-- claim so that one replica at a time works on a row.
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS channel_id bigint;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS user_id text;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS payload jsonb;
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS next_attempt_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE notifications ADD COLUMN IF NOT EXISTS claimed_until timestamptz;
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_channel ON notifications (channel_id, created_at DESC);

-- What the notifier last saw of each backend and instance, so an alert fires on the change
-- and not on every observation.
CREATE TABLE IF NOT EXISTS backend_alert_state (
  backend           text PRIMARY KEY,
  operational       boolean NOT NULL DEFAULT true,
  queue_high        boolean NOT NULL DEFAULT false,
  t1_degraded       boolean NOT NULL DEFAULT false,
  readout_degraded  boolean NOT NULL DEFAULT false,
  updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS quota_alert_state (
  instance   text PRIMARY KEY,
  above      boolean NOT NULL DEFAULT false,
  updated_at timestamptz NOT NULL DEFAULT now()
);
