"""Rewrite literal table names in generated migrations to ``table_name(...)`` calls.

``makemigrations`` writes ``db_table`` as the literal it saw (``'crm_people'``);
run this after it so the migration honours ``CRM_TABLE_PREFIX`` at migrate time:

    python scripts/prefix_migrations.py src/crm/*/migrations/0*.py
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PREFIX = "crm_"
IMPORT = "from crm.conf import table_name\n"
PATTERN = re.compile(r"""(['"]db_table['"]:\s*|db_table=)['"]""" + PREFIX + r"""([a-z0-9_]+)['"]""")


def rewrite(path: Path) -> bool:
    text = path.read_text()
    new = PATTERN.sub(lambda m: f"{m.group(1)}table_name({m.group(2)!r})", text)
    if new == text:
        return False
    if IMPORT not in new:
        new = new.replace("from django.db import", IMPORT + "from django.db import", 1)
    path.write_text(new)
    return True


if __name__ == "__main__":
    for name in sys.argv[1:]:
        if rewrite(Path(name)):
            print(f"rewrote {name}")
