"""The one progress bar of the project: tqdm's (rate and ETA) where tqdm is installed, else a dependency-free
line on stderr, redrawn in place on a terminal and a few plain lines otherwise."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: int, desc: str = "", enabled: bool = True, stream=None):
        self.total, self.desc, self.enabled = max(int(total), 1), desc, enabled
        self.stream = stream or sys.stderr
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.n, self.start, self._last = 0, time.perf_counter(), -1
        self._tqdm = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                pass
            else:
                self._tqdm = tqdm(total=self.total, desc=desc, file=self.stream, mininterval=0.5,
                                  disable=False, leave=True, dynamic_ncols=self.tty, ascii=not self.tty)

    def update(self, n: int = 1, **info) -> None:
        self.n += n
        if not self.enabled:
            return
        extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        if self._tqdm is not None:
            if extra:
                self._tqdm.set_postfix_str(extra, refresh=False)
            self._tqdm.update(n)
            return
        tenth = 10 * self.n // self.total
        if not self.tty and tenth == self._last and self.n < self.total:
            return  # off a terminal: about ten lines in all
        self._last = tenth
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        rate = self.n / elapsed
        eta = (self.total - self.n) / rate if rate > 0 else float("inf")
        bar = "#" * (20 * self.n // self.total)
        line = f"{self.desc} [{bar:20s}] {self.n}/{self.total} {rate:.1f}/s eta {eta:.0f}s {extra}"
        self.stream.write(("\r" + line) if self.tty else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.enabled and self.tty:
            self.stream.write("\n")
