-- One row per calibration snapshot with its medians: what dashboards compare across
-- backends and over weeks, and the notifier's baseline, without reading every qubit's
-- rows. The recorder writes it with the snapshot (the same event, the same batch).
CREATE TABLE IF NOT EXISTS calibration_snapshots (
  backend                 text NOT NULL,
  calibrated_at           timestamptz NOT NULL,
  qubits                  integer NOT NULL,
  t1_median_us            double precision,
  t2_median_us            double precision,
  readout_error_median    double precision,
  one_qubit_error_median  double precision,
  two_qubit_error_median  double precision,
  faulty_qubits           integer NOT NULL DEFAULT 0,
  PRIMARY KEY (backend, calibrated_at)
);
CREATE INDEX IF NOT EXISTS calibration_snapshots_time ON calibration_snapshots (calibrated_at);
DO $$
BEGIN
  IF qjt_has_timescaledb() THEN
    PERFORM create_hypertable('calibration_snapshots', 'calibrated_at', if_not_exists => TRUE, migrate_data => TRUE);
  END IF;
END $$;

-- Queue length per backend and hour, kept by the recorder as it stores status rows (only
-- rows it newly inserts count, so redelivery does not count twice): the dashboards' queue
-- history over weeks without reading every observation.
CREATE TABLE IF NOT EXISTS backend_status_hourly (
  backend           text NOT NULL,
  bucket            timestamptz NOT NULL,
  max_pending_jobs  integer NOT NULL,
  sum_pending_jobs  bigint NOT NULL,
  samples           integer NOT NULL,
  PRIMARY KEY (backend, bucket)
);
CREATE INDEX IF NOT EXISTS backend_status_hourly_bucket ON backend_status_hourly (bucket);
