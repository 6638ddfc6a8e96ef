"""``RunLog``: the append-only log of a run (``<run-id>.log``), one line per output
line with time, host, step and stream, flushed soon enough for ``tail -f`` and for a
killed deployer to leave its last step's output behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path


class RunLog:
    """The append-only redacted log of a run. Lines arrive already masked.

    Buffered (a step may print millions of lines), but no line waits long: the buffer
    is flushed at every event (step transitions) and within ``FLUSH_EVERY`` seconds of
    a line by a helper thread, so ``tail -f`` follows a running step and a deployer
    killed with SIGKILL leaves the output of its last step in the log, where ``show``
    and ``explain`` find it."""

    FLUSH_EVERY = 0.2

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(path, "a", encoding="utf-8", errors="replace")  # noqa: SIM115
        self.path = path
        self._lock = threading.Lock()
        self._unflushed = False
        self._flusher = False
        self._second = -1
        self._stamp = ""

    def _now(self) -> str:
        second = int(time.time())
        if second != self._second:  # strftime per line would cost more than the write
            self._second, self._stamp = second, time.strftime("%H:%M:%S",
                                                              time.localtime(second))
        return self._stamp

    def write(self, host: str, step: str, stream: str, line: str) -> None:
        mark = "!" if stream == "stderr" else " "
        with self._lock:
            if self._f.closed:
                return
            self._f.write(f"{self._now()} {host} {step}{mark}| {line}\n")
            self._unflushed = True
            if self._flusher:
                return
            self._flusher = True
        threading.Thread(target=self._flush_soon, name="deployer-log-flush",
                         daemon=True).start()

    def _flush_soon(self) -> None:
        while True:
            time.sleep(self.FLUSH_EVERY)
            with self._lock:
                if not self._unflushed or self._f.closed:
                    self._flusher = False
                    return
                self._f.flush()
                self._unflushed = False

    def event(self, text: str) -> None:
        with self._lock:
            if self._f.closed:
                return
            self._f.write(f"{self._now()} ==> {text}\n")
            self._f.flush()
            self._unflushed = False

    def flush(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.flush()
                self._unflushed = False

    def close(self) -> None:
        with self._lock:
            if not self._f.closed:
                self._f.close()
