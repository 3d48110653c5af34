"""Stopping a training run cleanly on Ctrl-C (SIGINT) or SIGTERM (what batch schedulers send).

While :class:`StopRequests` is active, either signal only *asks* the run to stop: the training
loop finishes the optimiser step under way, writes ``last.pt`` (in the middle of an epoch if
need be: ``--resume`` continues from that very step) and raises :class:`TrainingInterrupted`,
which the command line turns into one line and exit status 128 + the signal's number (130 for
SIGINT, 143 for SIGTERM). Under torchrun every process gets the signal (from the terminal, and
again from torchrun, which forwards it): the processes agree on the stop at each step, so they
stop at the same one. A third signal stops at once, without saving anything more.

DataLoader worker processes ignore both signals: the main process stops them.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Signals after which the run stops at once (the first ones ask for a clean stop).
FORCE_AFTER = 3


class TrainingInterrupted(Exception):
    """The run stopped on a signal. ``message``: the one line to show (empty on processes other
    than the main one); ``exit_status``: 128 + the signal number; ``orderly``: every process
    stopped at the same step, after saving (False after a forced stop)."""

    def __init__(self, message: str, exit_status: int, orderly: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.exit_status = exit_status
        self.orderly = orderly


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class StopRequests:
    """Context manager catching SIGINT and SIGTERM as stop requests (main thread only: signal
    handlers cannot be installed elsewhere, and there the signals keep their usual effect)."""

    def __init__(self) -> None:
        self.signal_number = 0
        self.count = 0
        self._previous = {}

    @property
    def requested(self) -> bool:
        return self.signal_number != 0

    def _handle(self, number: int, frame) -> None:
        self.count += 1
        self.signal_number = self.signal_number or number
        if self.count >= FORCE_AFTER:
            raise TrainingInterrupted(
                f"stopped at once by a third {signal_name(number)}: the run folder keeps its last checkpoint "
                "(last.pt), from which --resume continues.", 128 + number, orderly=False,
            )

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers leave SIGINT / SIGTERM to the main process."""
    for number in SIGNALS:
        signal.signal(number, signal.SIG_IGN)
