"""Single-row reads whose SQL is compiled once, then run with new values.

Why: on the widget's hot paths every HTTP send and every poll resolves the widget,
the visitor and the conversation, then answers with the conversation's state. For
each of those statements Django spent more CPU building and compiling the query
(~0.5 to 1 ms on this class of machine) than the database spent answering it, and
the statements never change shape, only their values. A ``CompiledRow`` builds its
queryset once per database with placeholder values, remembers where each
placeholder landed in the parameters, and from then on only swaps the values in.
Rows come back through the compiler's own converters, so types are exactly what
the ORM returns (UUIDs, datetimes, booleans on SQLite), and statements still run
through Django's cursor, so query logging and ``CaptureQueriesContext`` see them.

Supported placeholders are ``str``, ``int`` and ``uuid.UUID`` values compared in a
``WHERE``; a query whose placeholders can't be found exactly once each is refused
when it is first compiled, not answered wrongly.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.db import connections
from django.db.models import Model, QuerySet

M = TypeVar("M", bound=Model)

_KINDS: dict[type, Callable[[int], Any]] = {
    # Values no real lookup uses, so each one is found in the parameters only where
    # the placeholder put it.
    str: lambda i: f"\x00compiled-placeholder-{i}-{uuid.uuid4().hex}",
    int: lambda i: (
        -1_999_999_000 - i
    ),  # in range of a 32-bit column: out of range compiles to nothing
    uuid.UUID: lambda i: uuid.uuid4(),
}


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    slots: tuple[tuple[int, str, bool], ...]  # (index in params, name, is a UUID)
    converters: dict
    compiler: Any
    # A model row: the model and its fields' attnames in select order; a values row:
    # the names of the columns, model None.
    model: type[Model] | None
    names: tuple[str, ...]


class _CompiledQuery:
    # Whether rows are read as ``values()`` dicts rather than model instances.
    reads_values = False

    def __init__(self, build: Callable[..., QuerySet], **kinds: type) -> None:
        unknown = {name: kind for name, kind in kinds.items() if kind not in _KINDS}
        if unknown:
            raise TypeError(f"unsupported placeholder types: {unknown}")
        self._build = build
        self._kinds = kinds
        self._by_alias: dict[str, _Compiled] = {}

    def _compile(self, alias: str) -> _Compiled:
        connection = connections[alias]
        samples = {name: _KINDS[kind](i) for i, (name, kind) in enumerate(self._kinds.items())}
        qs = self._build(**samples)
        compiler = qs.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        slots = []
        for name, sample in samples.items():
            is_uuid = isinstance(sample, uuid.UUID)
            stored = (
                sample.hex if is_uuid and not connection.features.has_native_uuid_field else sample
            )
            where = [i for i, p in enumerate(params) if type(p) is type(stored) and p == stored]
            if len(where) != 1:
                raise ValueError(f"placeholder {name!r} appears {len(where)} times in {sql}")
            slots.append((where[0], name, is_uuid))
        columns = [s[0] for s in compiler.select]
        if not self.reads_values:
            info = compiler.klass_info
            if info.get("related_klass_infos"):
                raise ValueError("CompiledRow reads one model's columns (no select_related)")
            start, end = info["select_fields"][0], info["select_fields"][-1] + 1
            model: type[Model] | None = info["model"]
            names = tuple(s[0].target.attname for s in compiler.select[start:end])
            if (start, end) != (0, len(columns)):
                raise ValueError("CompiledRow reads one model's columns (no annotations)")
        else:
            model = None
            q = qs.query
            names = (*q.extra_select, *q.values_select, *q.annotation_select)
        return _Compiled(
            sql=sql,
            params=tuple(params),
            slots=tuple(slots),
            converters=compiler.get_converters(columns),
            compiler=compiler,
            model=model,
            names=tuple(names),
        )

    def _row(self, alias: str, values: dict[str, Any]) -> tuple[_Compiled, tuple | None]:
        compiled = self._by_alias.get(alias)
        if compiled is None:
            compiled = self._by_alias[alias] = self._compile(alias)
        connection = connections[alias]
        params = list(compiled.params)
        for index, name, is_uuid in compiled.slots:
            value = values[name]
            if is_uuid and not connection.features.has_native_uuid_field:
                value = value.hex
            params[index] = value
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            row = cursor.fetchone()
        if row is None:
            return compiled, None
        if compiled.converters:
            row = next(iter(compiled.compiler.apply_converters([row], compiled.converters)))
        return compiled, tuple(row)


class CompiledRow(_CompiledQuery, Generic[M]):
    """One model instance (or None): ``build`` returns ``Model.objects.filter(...)[:1]``."""

    def get(self, *, using: str = "default", **values: Any) -> M | None:
        compiled, row = self._row(using, values)
        if row is None:
            return None
        assert compiled.model is not None
        return compiled.model.from_db(using, list(compiled.names), row)  # type: ignore[return-value]


class CompiledValues(_CompiledQuery):
    """One row as a dict: ``build`` returns ``....values(...)[:1]``."""

    reads_values = True

    def get(self, *, using: str = "default", **values: Any) -> dict[str, Any] | None:
        compiled, row = self._row(using, values)
        return None if row is None else dict(zip(compiled.names, row, strict=True))
