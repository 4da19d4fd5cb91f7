"""Persists every event idempotently; the only writer of event tables."""
