"""Figures, their ratios to the same run's baseline, the printed table and results.json."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    section: str
    label: str
    value: float | None
    unit: str
    # What the value is compared with: a baseline measured in this run (or, for the
    # widget, a published anchor), and the ratio value / baseline.
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None
    target: str = ""
    ok: bool | None = None
    note: str = ""

    def cells(self) -> list[str]:
        value = "n/a" if self.value is None else f"{_num(self.value)} {self.unit}".strip()
        if self.note:
            value += f" {self.note}"
        base = ""
        if self.baseline is not None:
            base = f"{_num(self.baseline)} {self.unit}".strip()
            if self.baseline_label:
                base = f"{self.baseline_label} {base}"
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}x"
        verdict = {True: "ok", False: "MISS", None: ""}[self.ok]
        return [self.label, value, base, ratio, self.target, verdict]


def _num(x: float) -> str:
    if isinstance(x, int):  # counts
        return f"{x:,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def table(self) -> str:
        head = ["figure", "value", "baseline (same run)", "ratio", "target", ""]
        rows = [f.cells() for f in self.figures]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
        line = "  ".join("-" * w for w in widths)
        out: list[str] = []
        section = None
        for fig, row in zip(self.figures, rows, strict=True):
            if fig.section != section:
                section = fig.section
                out += ["", section, line]
            out.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        header = "  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)).rstrip()
        return "\n".join([header, *out[0:]] + (["", *self.notes] if self.notes else []))

    def write(self, path: Path) -> None:
        data = {
            "meta": {
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": _cpus(),
                **self.meta,
            },
            "figures": [asdict(f) for f in self.figures],
            "raw": self.raw,
            "notes": self.notes,
        }
        path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
