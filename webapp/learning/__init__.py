"""Learning on the server: the per-process posterior cache and time-decayed counts."""
