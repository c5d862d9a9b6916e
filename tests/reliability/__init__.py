"""Reliability: long runs under faults (the soak) and the regressions they found."""
