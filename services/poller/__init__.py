"""Polls IBM job, backend and usage state and publishes only what changed."""
