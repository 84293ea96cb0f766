"""portal-agent: the device side of the portal (plain requests, no Flask): readings, commands, retries."""
