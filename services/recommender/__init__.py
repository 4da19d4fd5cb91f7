"""Ranks backends for a circuit and predicts queue waits over NATS RPC."""
