"""Input and output schemas of the public widget API (validated by pydantic, in OpenAPI).

Inputs refuse unknown fields and NUL characters, and cap every length below what
the columns hold, so bad input is a 422 and never a failed write.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal
from uuid import UUID

from ninja import Field, Schema
from pydantic import ConfigDict, StrictInt, field_validator
from pydantic_core import PydanticCustomError

from crm.chat.events import MessagePayload


class In(Schema):
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL text columns can't hold NUL: refuse it as invalid input (422)
        # before it reaches a write that would fail with a 500.
        if isinstance(value, str) and "\x00" in value:
            raise PydanticCustomError("nul", "Must not contain NUL characters.")
        return value


class PageIn(In):
    url: str = Field(default="", max_length=4096)
    title: str = Field(default="", max_length=2048)
    referrer: str = Field(default="", max_length=4096)


class IdentifyIn(In):
    page: PageIn | None = None


class VisitorDetailsIn(In):
    name: str | None = Field(default=None, max_length=500)
    # The column holds 254 characters; a longer address can still pass validate_email
    # (up to 320), and PostgreSQL would then fail the write with a 500.
    email: str | None = Field(default=None, max_length=254)

    @field_validator("email", mode="after")
    @classmethod
    def _email_fits(cls, value: str | None) -> str | None:
        # The service stores the address lower-cased, and lower() can lengthen it
        # ("İ" becomes two characters), so measure what will be stored.
        if value is not None and len(value.strip().lower()) > 254:
            raise PydanticCustomError("too_long", "Must be at most 254 characters.")
        return value


class OpenIn(In):
    subject: str = Field(default="", max_length=500)


class SendIn(In):
    body: str = Field(..., max_length=20_000)
    client_id: str | None = Field(default=None, max_length=64)


class ReadIn(In):
    # Strict: JSON true/false must not pass as the seqs 1/0 (found by the API fuzzer).
    up_to_seq: StrictInt | None = Field(default=None, ge=0)


class VisitorOut(Schema):
    id: UUID
    name: str
    email: str


class WidgetOut(Schema):
    name: str
    welcome_message: str
    color: str
    position: str
    max_body: int
    # False outside the widget's business hours (the widget then says so).
    open_now: bool


class ConversationOut(Schema):
    id: UUID
    chat_id: str
    status: Literal["open", "pending", "closed"]
    last_seq: int
    # Highest seq of the visitor's messages an agent has read.
    read_up_to: int
    unread: int


class IdentifyOut(Schema):
    visitor_token: str | None = Field(
        default=None,
        description="Only on first contact: keep it and send it as X-Chat-Visitor-Token.",
    )
    visitor: VisitorOut
    widget: WidgetOut
    conversation: ConversationOut | None
    messages: list[MessagePayload]
    agents_online: int


class OpenOut(Schema):
    conversation: ConversationOut
    messages: list[MessagePayload]


class MessagesOut(Schema):
    conversation: ConversationOut
    messages: list[MessagePayload]
    agents_online: int
    # True when more messages follow: poll again at once with since=<last seq>.
    more: bool


class SentOut(Schema):
    message: MessagePayload
    conversation: ConversationOut
    duplicate: bool


class CountOut(Schema):
    updated: int


class PageViewOut(Schema):
    recorded: bool
    viewed_at: datetime | None


class ErrorDetail(Schema):
    code: str
    message: str
    fields: dict[str, list[str]] | None = None


class ErrorOut(Schema):
    error: ErrorDetail
