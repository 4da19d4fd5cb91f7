"""Quantum Job Tracker shared kernel: settings, contracts, bus, database, dev stack."""

__version__ = "0.1.0"
