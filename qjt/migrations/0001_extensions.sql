-- TimescaleDB when the server has it (and preloads it); otherwise plain PostgreSQL with
-- a time_bucket() that behaves like TimescaleDB's for fixed-width buckets, so every
-- query (Grafana panels included) runs on both.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
     AND coalesce(current_setting('shared_preload_libraries', true), '') LIKE '%timescaledb%' THEN
    CREATE EXTENSION IF NOT EXISTS timescaledb;
  END IF;
END $$;

CREATE OR REPLACE FUNCTION qjt_has_timescaledb() RETURNS boolean
LANGUAGE sql STABLE AS
$$ SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb') $$;

DO $$
BEGIN
  IF NOT qjt_has_timescaledb() THEN
    -- TimescaleDB's default origin is Monday 2000-01-03, so weekly buckets start on Mondays.
    CREATE OR REPLACE FUNCTION public.time_bucket(bucket_width interval, ts timestamptz)
    RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $f$ SELECT date_bin(bucket_width, ts, timestamptz '2000-01-03 00:00:00+00') $f$;

    CREATE OR REPLACE FUNCTION public.time_bucket(bucket_width interval, ts timestamp)
    RETURNS timestamp LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $f$ SELECT date_bin(bucket_width, ts, timestamp '2000-01-03 00:00:00') $f$;

    CREATE OR REPLACE FUNCTION public.time_bucket(bucket_width interval, ts timestamptz, origin timestamptz)
    RETURNS timestamptz LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $f$ SELECT date_bin(bucket_width, ts, origin) $f$;
  END IF;
END $$;
