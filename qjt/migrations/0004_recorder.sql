-- What the poller and recorder need beyond the core tables.

-- Jobs submitted outside this system are tracked too; their primitive may be unknown.
ALTER TABLE jobs ALTER COLUMN primitive DROP NOT NULL;

CREATE TABLE IF NOT EXISTS instance_usage (
  instance               text NOT NULL,             -- IBM instance CRN
  observed_at            timestamptz NOT NULL,
  usage_consumed_seconds double precision NOT NULL,
  usage_limit_seconds    double precision,          -- NULL: no limit
  PRIMARY KEY (instance, observed_at)
);

-- Hourly queue length per backend and daily calibration medians. With TimescaleDB they
-- are continuous aggregates refreshed by policies; without it (or if the server refuses
-- an aggregate) they are plain views with the same name and columns.
DO $$
BEGIN
  IF qjt_has_timescaledb() THEN
    PERFORM create_hypertable('instance_usage', 'observed_at', if_not_exists => TRUE, migrate_data => TRUE);

    ALTER TABLE backend_status SET (timescaledb.compress, timescaledb.compress_segmentby = 'backend');
    ALTER TABLE qubit_calibration SET (timescaledb.compress, timescaledb.compress_segmentby = 'backend');
    ALTER TABLE gate_calibration SET (timescaledb.compress, timescaledb.compress_segmentby = 'backend');
    ALTER TABLE job_events SET (timescaledb.compress, timescaledb.compress_segmentby = 'job_id');
    PERFORM add_compression_policy('backend_status', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('qubit_calibration', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('gate_calibration', INTERVAL '7 days', if_not_exists => TRUE);
    PERFORM add_compression_policy('job_events', INTERVAL '30 days', if_not_exists => TRUE);
    PERFORM add_retention_policy('backend_status', INTERVAL '180 days', if_not_exists => TRUE);
    PERFORM add_retention_policy('instance_usage', INTERVAL '365 days', if_not_exists => TRUE);

    BEGIN
      EXECUTE $v$
        CREATE MATERIALIZED VIEW IF NOT EXISTS backend_queue_hourly
        WITH (timescaledb.continuous) AS
        SELECT time_bucket(INTERVAL '1 hour', observed_at) AS bucket, backend,
               avg(pending_jobs)::double precision AS avg_pending_jobs,
               max(pending_jobs) AS max_pending_jobs,
               count(*) AS samples
        FROM backend_status GROUP BY 1, 2 WITH NO DATA $v$;
      PERFORM add_continuous_aggregate_policy('backend_queue_hourly',
        start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
        schedule_interval => INTERVAL '30 minutes', if_not_exists => TRUE);
    EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR wrong_object_type THEN
      RAISE NOTICE 'backend_queue_hourly: continuous aggregate refused (%), using a view', SQLERRM;
    END;

    BEGIN
      EXECUTE $v$
        CREATE MATERIALIZED VIEW IF NOT EXISTS calibration_daily
        WITH (timescaledb.continuous) AS
        SELECT time_bucket(INTERVAL '1 day', calibrated_at) AS bucket, backend,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY t1_us) AS median_t1_us,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY t2_us) AS median_t2_us,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY readout_error) AS median_readout_error,
               count(*) AS samples
        FROM qubit_calibration GROUP BY 1, 2 WITH NO DATA $v$;
      PERFORM add_continuous_aggregate_policy('calibration_daily',
        start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour',
        schedule_interval => INTERVAL '1 hour', if_not_exists => TRUE);
    EXCEPTION WHEN feature_not_supported OR invalid_parameter_value OR wrong_object_type THEN
      RAISE NOTICE 'calibration_daily: continuous aggregate refused (%), using a view', SQLERRM;
    END;
  END IF;

  IF to_regclass('backend_queue_hourly') IS NULL THEN
    CREATE VIEW backend_queue_hourly AS
    SELECT time_bucket(INTERVAL '1 hour', observed_at) AS bucket, backend,
           avg(pending_jobs)::double precision AS avg_pending_jobs,
           max(pending_jobs) AS max_pending_jobs,
           count(*) AS samples
    FROM backend_status GROUP BY 1, 2;
  END IF;
  IF to_regclass('calibration_daily') IS NULL THEN
    CREATE VIEW calibration_daily AS
    SELECT time_bucket(INTERVAL '1 day', calibrated_at) AS bucket, backend,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY t1_us) AS median_t1_us,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY t2_us) AS median_t2_us,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY readout_error) AS median_readout_error,
           count(*) AS samples
    FROM qubit_calibration GROUP BY 1, 2;
  END IF;
END $$;
