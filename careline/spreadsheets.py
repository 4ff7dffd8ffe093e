"""CSV files Careline hands to people: cells a spreadsheet would run are neutralized.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as
a formula by Excel, LibreOffice and Google Sheets (CSV/formula injection). Names and notes
typed by staff, patients or EHR feeds reach the exports, so every text cell that starts
like that gets a leading ``'``; numbers stay numbers. Every export writes through
`writer` here.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class _SafeWriter:
    def __init__(self, target, **kwargs):
        self._writer = csv.writer(target, **kwargs)

    def writerow(self, row: Iterable[Any]):
        return self._writer.writerow([neutralize(cell) for cell in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(target, **kwargs) -> _SafeWriter:
    """A `csv.writer` whose text cells cannot start a spreadsheet formula."""
    return _SafeWriter(target, **kwargs)
