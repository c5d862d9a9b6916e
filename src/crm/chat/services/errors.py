"""Refusals of the chat service, one class per reason a caller must tell apart.

They live apart from the operations so that the API, the inbox, the sockets and
the tests can import them without pulling in the write paths. ``code`` is the
stable short string the public API puts in ``{"error": {"code", "message"}}``;
the message is a full sentence for people. Input that is merely malformed
(too long, empty, not a URL) raises Django's ``ValidationError`` instead.
"""

from __future__ import annotations


class ChatError(Exception):
    """A refused operation; ``code`` is stable for API clients, the message is for people."""

    code = "chat_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class InvalidToken(ChatError):
    code = "invalid_token"


class ConversationClosed(ChatError):
    code = "conversation_closed"


class AlreadyConverted(ChatError):
    code = "already_converted"


class NotAllowed(ChatError):
    code = "not_allowed"


class NotServing(ChatError):
    """The widget no longer serves under the sender's key, or the chat was deleted."""

    code = "not_serving"
