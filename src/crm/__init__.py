"""crm-chat: a small Django CRM with a lossless, secure live-chat module."""

__version__ = "0.1.0"
