"""Benchmarks of crm-chat against a bare ASGI baseline measured in the same run.

Run ``python -m bench`` (or ``make bench``); see bench/README.md.
"""
