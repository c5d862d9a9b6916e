"""No path answers 5xx: every URL pattern of the project, walked with hostile values.

A guard for routes added later, so nothing here names a route: the patterns come
from the resolver (recursively: core pages, the inbox, settings, the public chat
endpoints, the ninja operations, the admin). Each path parameter gets a real value,
found by trying the scene's objects, then hostile values one parameter at a time.
The query string gets hostile values for the names the view reads (recorded while
it answers) and for a few common names. Routes that accept POST also get an empty
body and garbage bodies. All of it as an anonymous visitor and as an Owner.

Every request runs in a savepoint that is rolled back, and the client's cookies are
put back after it, so a delete, a key rotation or a logout can't change what the
next request sees. Failures are collected and reported together.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from unittest import mock
from urllib.parse import quote, urlencode

import pytest
from django.db import transaction
from django.http import HttpResponse, QueryDict
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.exceptions import Resolver404
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils.datastructures import MultiValueDict

from crm.chat.api import TOKEN_HEADER
from crm.core.models import Lead, Note, Organisation, Person
from tests.chat.conftest import make_world
from tests.security.conftest import NO_RATE_LIMITS

# A bounded set, so the walk stays well under a minute on SQLite.
HOSTILE = [
    "99999999999999999999999",  # beyond 64 bits
    "-1",
    "-0",
    "\u0661\u0662\u0663",  # Arabic-Indic digits: int() reads them as 123
    "é漢字\U0001f600",
    "x" * 5000,
    "\x00",
    "a.b~",
]
# Path segments also get the ones a URL normaliser would treat specially.
HOSTILE_SEGMENTS = [*HOSTILE, "..", " "]
# One query parameter at a time: the numbers, and the strings databases refuse.
HOSTILE_FIELDS = [*HOSTILE[:4], "x" * 5000, "\x00"]
HOSTILE_MARKERS = [HOSTILE[0], "\x00"]
# Sent on every route whether or not the view is seen reading them (see fuzz_query).
COMMON_QUERY = ["page", "p", "o", "q", "since", "limit", "status", "assigned", "widget", "all"]
GARBAGE_BODIES = [
    (b"", "application/x-www-form-urlencoded"),
    (b'{"\xff\x00 not json', "application/json"),
    (b"\x00\xfe garbage", "multipart/form-data; boundary=x"),
]
NAMED_GROUP = re.compile(r"\(\?P<(\w+)>")
ROUTE_PARAM = re.compile(r"<(?:\w+:)?(\w+)>")
REGEX_LEFT = re.compile(r"[()\[\]*+?|{}^$\\]")


@dataclass(frozen=True)
class Route:
    template: str  # "/crm/people/{external_id}/"
    params: tuple[str, ...]
    callback: Any


@dataclass
class Failure:
    who: str
    method: str
    path: str
    status: int

    def __str__(self) -> str:
        shown = self.path if len(self.path) <= 160 else self.path[:160] + "…"
        return f"{self.who}: {self.method} {shown} -> {self.status}"


# ------------------------------------------------------------------- discovery


def _regex_template(regex: str) -> str:
    """``^p/chat/(?P<public_key>[A-Z]+)\\.js$`` -> ``p/chat/{public_key}.js``.

    Named groups become placeholders (their bodies are skipped with paren counting);
    anything else regex-like left over means the walker must be taught the pattern.
    """
    out, i = [], 0
    regex = regex.removeprefix("^").removesuffix("$")
    while i < len(regex):
        group = NAMED_GROUP.match(regex, i)
        if group:
            depth, j = 1, group.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(regex[j], 0) if regex[j - 1] != "\\" else 0
                j += 1
            out.append("{" + group[1] + "}")
            i = j
        elif regex[i] == "\\":
            out.append(regex[i + 1])
            i += 2
        else:
            out.append(regex[i])
            i += 1
    template = "".join(out)
    leftover = REGEX_LEFT.sub("", template.replace("{", "").replace("}", ""))
    assert leftover == template.replace("{", "").replace("}", ""), (
        f"the walker can't turn {regex!r} into a path: teach _regex_template"
    )
    return template


def _piece(pattern: RoutePattern | RegexPattern) -> str:
    if isinstance(pattern, RoutePattern):
        return ROUTE_PARAM.sub(r"{\1}", str(pattern))
    return _regex_template(pattern.regex.pattern)


def _walk(patterns: list[URLPattern | URLResolver], prefix: str) -> Iterator[Route]:
    for entry in patterns:
        template = prefix + _piece(entry.pattern)  # type: ignore[arg-type]
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, template)
        else:
            params = tuple(re.findall(r"\{(\w+)\}", template))
            yield Route("/" + template, params, entry.callback)


def all_routes() -> list[Route]:
    """Every endpoint of the project's URLconf, once per distinct path template."""
    seen: dict[str, Route] = {}
    for route in _walk(get_resolver().url_patterns, ""):
        seen.setdefault(route.template, route)
    return list(seen.values())


# ------------------------------------------------------------------ the scene


@dataclass
class Scene:
    token: str
    owner: Any
    candidates: list[str]  # real values a path parameter may take: pks, then uuids, …


def build_scene() -> Scene:
    world = make_world()
    conv = world.conversation()
    world.service.send_visitor_message(conversation=conv, visitor=world.visitor, body="Hi")
    organisation = Organisation.objects.create(name="Acme Ltd")
    person = Person.objects.create(first_name="Ada", organisation=organisation)
    lead = Lead.objects.create(title="Renewal", person=person, organisation=organisation)
    note = Note.objects.create(content="Called.", person=person, author=world.owner)
    objects = [person, organisation, lead, note, conv, world.widget, world.visitor, world.owner]
    candidates = [str(o.pk) for o in objects]
    candidates += [str(o.external_id) for o in objects if hasattr(o, "external_id")]
    candidates += [world.widget.public_key, "assign", "crm_core", "crm_chat", "x"]
    return Scene(world.token, world.owner, list(dict.fromkeys(candidates)))


# ------------------------------------------------------------------ requests


@dataclass
class Lookups:
    """What a view did with ``request.GET`` / ``request.POST`` while it answered."""

    names: set[str]
    iterated: bool = False


@contextmanager
def recording_lookups() -> Iterator[Lookups]:
    """Record the names a view looks up in a QueryDict, and whether it walked one
    (the admin's changelist and ninja take whatever names they are given)."""
    seen = Lookups(set())

    def by_name(original: Any) -> Any:
        def lookup(self: MultiValueDict, key: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(self, QueryDict) and isinstance(key, str):
                seen.names.add(key)
            return original(self, key, *args, **kwargs)

        return lookup

    def walking(original: Any) -> Any:
        def walk(self: MultiValueDict, *args: Any, **kwargs: Any) -> Any:
            if isinstance(self, QueryDict) and self:
                seen.iterated = True
            return original(self, *args, **kwargs)

        return walk

    patches = [
        mock.patch.object(MultiValueDict, name, by_name(getattr(MultiValueDict, name)))
        for name in ("get", "__getitem__", "getlist", "__contains__")
    ] + [
        mock.patch.object(MultiValueDict, name, walking(getattr(MultiValueDict, name)))
        for name in ("items", "lists", "values", "keys", "__iter__")
    ]
    for patch in patches:
        patch.start()
    try:
        yield seen
    finally:
        for patch in reversed(patches):
            patch.stop()


class Walker:
    """Sends requests as one user, each in a rolled-back savepoint, noting 5xx answers."""

    def __init__(self, who: str, client: Client, scene: Scene) -> None:
        self.who = who
        self.client = client
        self.scene = scene
        self.failures: list[Failure] = []
        self.count = 0

    def send(
        self, method: str, path: str, *, body: bytes = b"", content_type: str = ""
    ) -> HttpResponse:
        cookies = SimpleCookie(self.client.cookies)
        headers = {TOKEN_HEADER: self.scene.token}
        with transaction.atomic():
            if method == "GET":
                response = self.client.get(path, headers=headers)
            else:
                response = self.client.generic(method, path, body, content_type, headers=headers)
            transaction.set_rollback(True)
        self.client.cookies = cookies  # a logout or a new session must not last
        self.count += 1
        if response.status_code >= 500:
            self.failures.append(Failure(self.who, method, path, response.status_code))
        return response


def render(route: Route, values: dict[str, str]) -> str:
    return route.template.format(**{k: quote(v, safe="") for k, v in values.items()})


def _resolves_to(route: Route, path: str) -> bool:
    try:
        return resolve(path).func is route.callback
    except Resolver404:
        return False


def probe(walker: Walker, path: str) -> int:
    """The status of a plain request: GET, or POST where GET is not allowed."""
    status = walker.send("GET", path).status_code
    return walker.send("POST", path).status_code if status == 405 else status


def baseline(walker: Walker, route: Route) -> dict[str, str]:
    """Real values for the route's parameters, one parameter after the other: the
    first that answers 2xx, else the first that answers anything but 404, else any
    value the pattern accepts. Hostile values then replace one of them at a time."""
    values = {name: "x" for name in route.params}
    for name in route.params:
        fitting = [
            candidate
            for candidate in walker.scene.candidates
            if _resolves_to(route, render(route, {**values, name: candidate}))
        ]
        found = None
        for candidate in fitting:
            status = probe(walker, render(route, {**values, name: candidate}))
            if status < 300:
                found = candidate
                break
            if status != 404 and found is None:
                found = candidate
        values[name] = found or (fitting[0] if fitting else "x")
    return values


def _query(names: list[str] | set[str], value: str) -> str:
    return "?" + urlencode(dict.fromkeys(sorted(names), value), quote_via=quote)


def fuzz_path(walker: Walker, route: Route, values: dict[str, str], methods: list[str]) -> None:
    for name in route.params:
        for value in HOSTILE_SEGMENTS:
            for method in methods:
                walker.send(method, render(route, {**values, name: value}))


def fuzz_query(walker: Walker, path: str) -> None:
    """Hostile values in the query string of a route's plain (baseline) path.

    Per hostile value, one request with the names the view reads plus the common
    ones. Names starting with an underscore (the admin's own markers, such as
    ``_to_field``, refused with a 400 before anything else) go in a request of their
    own, with fewer values. Then each name the view reads goes alone, so a refusal
    of one name can't hide what another does. A view that walks the query string
    can't be seen reading a name (the admin's changelist filters by any field it is
    given, ninja validates the whole query): when it answers the common names
    differently from a plain request, each common name goes alone too.
    """
    with recording_lookups() as seen:
        plain = walker.send("GET", path).status_code
    if plain in {404, 405}:
        return
    with recording_lookups() as probing:  # a view walks only a query string with names
        probed = walker.send("GET", path + _query(COMMON_QUERY, "1")).status_code
    own = {name for name in seen.names if not name.startswith("_")}
    markers = seen.names - own
    takes_any_name = probing.iterated and plain < 300
    alone = own | (set(COMMON_QUERY) if takes_any_name and probed != plain else set())
    for value in HOSTILE:
        status = walker.send("GET", path + _query(own | set(COMMON_QUERY), value)).status_code
        if takes_any_name and status >= 400:
            alone |= set(COMMON_QUERY)
        if markers and value in HOSTILE_MARKERS:
            walker.send("GET", path + _query(markers, value))
    for name in sorted(alone):
        for value in HOSTILE_FIELDS:
            walker.send("GET", path + _query([name], value))


def fuzz_body(walker: Walker, path: str) -> None:
    """An empty body, broken JSON and a broken multipart body."""
    for body, content_type in GARBAGE_BODIES:
        walker.send("POST", path, body=body, content_type=content_type)


def walk_route(walker: Walker, route: Route, values: dict[str, str]) -> None:
    """Hostile path values, hostile query values, then (if POST is allowed) bodies."""
    path = render(route, values)
    get_allowed = walker.send("GET", path).status_code != 405
    accepts_post = walker.send("POST", path).status_code != 405
    # A view parses its path the same way for either method: one of them is enough.
    fuzz_path(walker, route, values, ["GET"] if get_allowed or not accepts_post else ["POST"])
    fuzz_query(walker, path)
    if accepts_post:
        fuzz_body(walker, path)


# ----------------------------------------------------------------------- tests


def test_the_walk_finds_every_kind_of_route() -> None:
    """The discovery itself: a walker that found nothing would pass vacuously."""
    templates = {route.template for route in all_routes()}
    expected = {
        "/crm/people/{external_id}/notes/{note_id}/delete/",
        "/crm/chat/{external_id}/{name}/",
        "/crm/chat-widgets/{external_id}/edit/",
        "/p/chat/{public_key}.js",
        "/p/chat/{public_key}",
        "/p/chat/{public_key}/api/conversations/{conversation_id}/messages",
        "/admin/crm_chat/chatconversation/",
        "/admin/{app_label}/",
    }
    assert expected <= templates, expected - templates


def test_no_route_answers_5xx_to_hostile_values(
    db: None, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """As an anonymous visitor and as an Owner (staff and superuser: the admin too).

    The real parameter values are searched for once, as the Owner, who can see
    every object; the anonymous walk uses the same ones.
    """
    settings.CRM_CHAT_RATE_LIMITS = NO_RATE_LIMITS
    caplog.set_level(logging.ERROR, logger="django.request")  # thousands of "Not Found"
    scene = build_scene()
    owner = Client(raise_request_exception=False)
    owner.force_login(scene.owner)
    walkers = [
        Walker("anonymous", Client(raise_request_exception=False), scene),
        Walker("owner", owner, scene),
    ]
    for route in all_routes():
        values = baseline(walkers[1], route)
        for walker in walkers:
            walk_route(walker, route, values)
    assert all(walker.count > 2000 for walker in walkers), [w.count for w in walkers]
    failures = [failure for walker in walkers for failure in walker.failures]
    assert not failures, "\n".join(map(str, failures))
