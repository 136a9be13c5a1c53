"""Mock servers of each vendor, shipped so a run can be rehearsed before production."""
