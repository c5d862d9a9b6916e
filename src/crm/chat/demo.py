"""Idempotent demo data for the chat module."""

from __future__ import annotations


def load_chat_demo() -> list[str]:
    """Create the demo widget; returns lines to print for the user."""
    return []
