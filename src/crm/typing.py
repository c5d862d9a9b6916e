"""Types for who acts on a request or a socket: a logged-in CRM user.

Django types ``request.user`` as ``User | AnonymousUser`` because any request may
be anonymous. Views behind ``login_required`` (or a permission check, which needs
a login too) only ever see a logged-in user, and the services they call take a
``User`` (the model behind every owner, author and assignee foreign key).
``AuthedHttpRequest`` states what those decorators guarantee, so the views pass
``request.user`` on without a check that could never fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from django.http import HttpRequest

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
    from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request that went through ``HtmxMiddleware`` (every request does, see settings)."""

    htmx: HtmxDetails


class AuthedHttpRequest(HtmxHttpRequest):
    """A request of a logged-in user: the type of views behind ``login_required``."""

    user: User


def logged_in(user: AbstractBaseUser | AnonymousUser | None) -> User | None:
    """The user if logged in, else ``None``.

    For users that auth resolved outside a view (a socket's scope, a stored
    session): they are instances of the CRM's user model once authenticated, which
    the auth backend's ``AbstractBaseUser`` type doesn't say.
    """
    if user is None or not user.is_authenticated:
        return None
    return cast("User", user)
