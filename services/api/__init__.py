"""FastAPI gateway: auth, submit, cancel, list and filter jobs, backends, exports."""
