"""Where the relay sends committed events: brokers' clients, one module per broker (docs/events-out.md)."""
