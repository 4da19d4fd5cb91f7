-- What the recommender and predictor read, and the analytics' per-backend time ranges.

-- The latest calibration snapshot of a backend, and a backend's history over a time range,
-- without walking every qubit's rows.
CREATE INDEX IF NOT EXISTS qubit_calibration_backend_time
  ON qubit_calibration (backend, calibrated_at DESC);
CREATE INDEX IF NOT EXISTS gate_calibration_backend_time
  ON gate_calibration (backend, calibrated_at DESC);
-- The predictor's history: finished queue waits, newest first.
CREATE INDEX IF NOT EXISTS jobs_running ON jobs (running_at DESC) WHERE running_at IS NOT NULL;
