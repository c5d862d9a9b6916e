"""Test machinery shared by several test packages (clusters, clients, fault injectors)."""
