"""WebSocket routes of the chat module."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from channels.auth import AuthMiddlewareStack
from django.urls import re_path

from crm.chat.realtime.agent import AgentSocket
from crm.chat.realtime.visitor import VisitorSocket

if TYPE_CHECKING:
    from asgiref.typing import ASGIApplication
    from channels.routing import URLRouter, _ExtendedURLPattern
    from channels.utils import _ChannelApplication


def asgi_app(app: Callable[[dict[str, Any], Any, Any], Awaitable[None]]) -> ASGIApplication:
    """A socket handler's ASGI app, typed as Channels' routing and middleware take it.

    The handlers type the scope as a plain dict; asgiref types it as one TypedDict per
    protocol, which a function taking a dict doesn't match.
    """
    return cast("ASGIApplication", app)


def socket_path(route: str, app: _ChannelApplication) -> _ExtendedURLPattern:
    """``re_path`` for a socket: Channels routes ASGI apps with Django's URL patterns.

    The pattern is typed as the one Channels' ``URLRouter`` takes.
    """
    # django-stubs types re_path's target as an HTTP view only, not an ASGI app.
    return cast("_ExtendedURLPattern", re_path(route, app))  # type: ignore[arg-type]


websocket_urlpatterns: list[_ExtendedURLPattern | URLRouter] = [
    socket_path(
        r"^p/chat/(?P<public_key>[A-Za-z0-9_-]{1,128})/ws$", asgi_app(VisitorSocket.as_asgi())
    ),
    # Only the agent socket reads the session cookie; the visitor socket never does.
    socket_path(r"^crm/chat/ws$", AuthMiddlewareStack(asgi_app(AgentSocket.as_asgi()))),
]
