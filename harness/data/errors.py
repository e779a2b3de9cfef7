"""One error type for bad input data: it names the file, the field and the fix."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Raised for any problem with a user's input files.

    The message always has the form ``<file>: field '<field>': <problem>. Fix: <fix>`` so that a
    user can act on it without reading a traceback.
    """

    def __init__(self, file: str | Path | None, field: str | None, problem: str, fix: str):
        self.file = str(file) if file is not None else None
        self.field = field
        self.problem = problem
        self.fix = fix
        where = self.file or "<data set>"
        what = f"field '{field}': " if field else ""
        super().__init__(f"{where}: {what}{problem}. Fix: {fix}")
