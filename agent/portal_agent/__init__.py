"""portal-agent: the device side of the portal (plain requests, no Flask).

Readings, heartbeats, commands and retries.
"""
