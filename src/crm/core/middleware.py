"""Module gating: a disabled module's pages and endpoints answer 404."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound

from crm.conf import module_enabled, module_for_path


class ModuleGateMiddleware:
    """Answer 404 for paths that belong to a module not listed in ``CRM_MODULES``.

    Checked per request rather than by building the URLconf conditionally, so a
    settings change (or ``override_settings`` in tests) takes effect immediately.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        if iscoroutinefunction(self.get_response):
            markcoroutinefunction(self)

    def _blocked(self, request: HttpRequest) -> bool:
        module = module_for_path(request.path_info)
        return module is not None and not module_enabled(module)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        # Kept in a variable: as an if-test, asgiref's type guard would narrow ``self`` to
        # a bare coroutine function.
        is_async = iscoroutinefunction(self)
        if is_async:
            return self.__acall__(request)
        if self._blocked(request):
            return self._not_found()
        return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        if self._blocked(request):
            return self._not_found()
        return await self.get_response(request)

    @staticmethod
    def _not_found() -> HttpResponse:
        return HttpResponseNotFound(b"Not found", content_type="text/plain; charset=utf-8")
