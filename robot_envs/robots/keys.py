"""Keys at the operator's terminal: ``e``, space or Esc is the e-stop; ``y``/``n`` judge an episode.

One reader thread owns stdin (in cbreak mode, restored on ``close``) so the e-stop works
while the policy runs and the success prompt reads from the same stream.
"""

from __future__ import annotations

import queue
import sys
import threading
from typing import Any

from robot_envs.robots.safety import EmergencyStop, EStop

ESTOP_KEYS = ("e", " ", "\x1b")


class TerminalKeys:
    def __init__(self, estop: EStop) -> None:
        self.estop = estop
        self.answers: queue.Queue[str] = queue.Queue()
        self._saved: Any = None

    def feed(self, key: str) -> None:
        """Handle one key press (the reader thread calls this; tests call it directly)."""
        if key in ESTOP_KEYS:
            self.estop.trigger(f"key {key!r}")
        elif key.lower() in ("y", "n"):
            self.answers.put(key.lower())

    def read_answer(self) -> str:
        """Wait for y/n; the e-stop still works while the operator is being asked."""
        while True:
            if self.estop.triggered:
                raise EmergencyStop(f"emergency stop ({self.estop.reason}) while waiting for the operator's verdict")
            try:
                return self.answers.get(timeout=0.1)
            except queue.Empty:
                continue

    def start(self) -> "TerminalKeys":
        if not sys.stdin.isatty():
            return self
        import termios
        import tty

        self._saved = termios.tcgetattr(sys.stdin.fileno())
        tty.setcbreak(sys.stdin.fileno())
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        while True:
            key = sys.stdin.read(1)
            if not key:
                return
            self.feed(key)

    def close(self) -> None:
        if self._saved is not None:
            import termios

            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._saved)
            self._saved = None
