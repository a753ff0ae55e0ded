"""Live fan-out: the spectator WebSocket edge, the hub, spectators' bounded queues, the fast path, the
publisher, and the reads that joins share."""
