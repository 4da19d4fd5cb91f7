"""Turns submit and cancel commands into IBM Runtime (or local Aer) jobs."""
