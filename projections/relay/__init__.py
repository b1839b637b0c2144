"""The relay: committed events of the log, out to a broker as CloudEvents (docs/events-out.md)."""
