"""Persistence: the typed ORM, the engine factory, and the job state machine (leases and fences)."""
