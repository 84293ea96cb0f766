"""Schedules in time: pure arithmetic (timing) and the passes that fire them (runner)."""
