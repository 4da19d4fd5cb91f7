-- With TimescaleDB, the time-series tables become hypertables (their primary keys
-- already include the time column). Without it they stay plain tables.
DO $$
BEGIN
  IF qjt_has_timescaledb() THEN
    PERFORM create_hypertable('job_events', 'occurred_at', if_not_exists => TRUE, migrate_data => TRUE);
    PERFORM create_hypertable('backend_status', 'observed_at', if_not_exists => TRUE, migrate_data => TRUE);
    PERFORM create_hypertable('qubit_calibration', 'calibrated_at', if_not_exists => TRUE, migrate_data => TRUE);
    PERFORM create_hypertable('gate_calibration', 'calibrated_at', if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END $$;
