"""A dependency-free progress line on stderr: redrawn in place on a terminal, a few plain lines otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", enabled: bool = True, stream=None):
        self.total, self.desc, self.enabled = max(int(total), 1), desc, enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.n, self.start, self._last = 0, time.perf_counter(), -1

    def update(self, n: int = 1, **info) -> None:
        self.n += n
        if not self.enabled:
            return
        tenth = 10 * self.n // self.total
        if not self.tty and tenth == self._last and self.n < self.total:
            return  # off a terminal: about ten lines in all
        self._last = tenth
        rate = self.n / max(time.perf_counter() - self.start, 1e-9)
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        bar = "#" * (20 * self.n // self.total)
        line = f"{self.desc} [{bar:20s}] {self.n}/{self.total} {rate:.1f}/s {extra}"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
