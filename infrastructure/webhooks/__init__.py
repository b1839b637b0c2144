"""Tenants' webhook endpoints: their registrations and secrets, what URL may be one, and sending to one.

The dispatcher that follows the log and decides what to send lives with the
relay (``projections/relay/webhooks.py``); docs/events-out.md tells the whole.
"""
