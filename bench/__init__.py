"""`make bench`: the portal's performance benchmark (see README, Performance)."""
