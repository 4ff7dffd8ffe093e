"""Fresh planner statistics after a bulk load.

A query planner without statistics guesses, and on a table that just received 10^5 rows
a guess can turn a 10 ms query into minutes (issue 21: a broadcast preview took 119 s on a
fresh demo until someone ran ANALYZE by hand). Every bulk path (the demo, a CSV import,
an HL7 batch file, planning every visit) calls `refresh_statistics` with the tables it
filled. A module of its own at the bottom layer so every app can call it.
"""

from __future__ import annotations

from django.db import connection
from django.db.models import Model

# Rows SQLite reads per index when analyzing: a bounded sample, so the statistics of a
# 10^6-row table cost milliseconds, not a full scan per index on every import.
SQLITE_ANALYSIS_LIMIT = 1000


def refresh_statistics(*models: type[Model]) -> None:
    """ANALYZE the tables of these models (SQLite: sampled; PostgreSQL: its own sample)."""
    tables = sorted({model._meta.db_table for model in models})
    if not tables:
        return
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {', '.join(quote(t) for t in tables)}")
        elif connection.vendor == "sqlite":
            cursor.execute(f"PRAGMA analysis_limit = {SQLITE_ANALYSIS_LIMIT}")
            for table in tables:
                cursor.execute(f"ANALYZE {quote(table)}")
