"""User-facing errors. The CLI prints ``str(error)`` and exits 2 for any of these."""

from __future__ import annotations

import difflib


class SemirError(Exception):
    """Base class of every error caused by the user's input rather than a bug in semir."""


class SourceError(SemirError):
    """An error at a position in model text: ``file:line:col: error: msg`` plus the line and a caret."""

    def __init__(self, message: str, file: str = "<string>", line: int = 0, col: int = 0, source: str | None = None):
        self.message, self.file, self.line, self.col = message, file, line, col
        self.source_line = None
        if source is not None and line >= 1:
            lines = source.splitlines()
            if line <= len(lines):
                self.source_line = lines[line - 1]
        super().__init__(self._format())

    def _format(self) -> str:
        head = f"{self.file}:{self.line}:{self.col}: error: {self.message}" if self.line else (
            f"{self.file}: error: {self.message}")
        if self.source_line is None:
            return head
        caret = " " * (max(self.col, 1) - 1 + 4) + "^"
        return f"{head}\n    {self.source_line}\n{caret}"


class TypeCheckError(SemirError):
    """A shape or dtype mismatch found while building or verifying IR."""


class InputError(SemirError):
    """Bad run-time inputs: missing, extra, wrong shape or dtype, NaN."""


class OptionError(SemirError):
    """An unknown option value (semiring, backend, pass, node name...)."""


def suggest(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` when a close match exists, else an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(kind: str, name: str, choices) -> OptionError:
    choices = list(choices)
    return OptionError(f"unknown {kind} {name!r}{suggest(name, choices)}; valid choices: {', '.join(choices)}")
