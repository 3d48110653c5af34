"""The destinations of a run: checked before any work, written beside, committed together.

Every algorithm writes its outputs (rasters, reports, polygons) through this module, so that
whatever happens the user never loses data:

* :func:`check_destinations` runs before any work: every output's folder exists and is
  writable, no output is a folder, no two outputs are one file, no output is one of the
  inputs (however the path is spelled: ``..``, symlinks, hard links), and the free disk space
  can hold the outputs' expected size.
* Each output is first written to a hidden partial file beside its destination
  (:func:`partial_path`), named after the host and process that write it, so that partial files
  left by a killed run are recognised and removed by the next run (:func:`remove_stale_partials`).
* An :class:`OutputSet` commits all outputs of one run together (renames them into place) when
  the run succeeds, and deletes every partial file when it fails, is cancelled or is stopped
  by SIGINT or SIGTERM (:func:`cleanup_on_terminate`).
* :func:`write_failure` turns a failed write into one line that says what happened (the disk is
  full, a file size limit, ...), and that the previous file, if any, is kept.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import threading
import uuid
from typing import Callable, Iterator, Mapping, Sequence

from .errors import SarDespeckleError

#: Suffix before the extension of every partial file.
PARTIAL_MARK = ".partial"
#: Free space kept in reserve on top of an output's expected size (bytes).
DISK_MARGIN = 1024 * 1024


# -- checks before any work ----------------------------------------------------------------


def _same_file(a: str, b: str) -> bool:
    """True when paths ``a`` and ``b`` name one file (spelling, symlinks and hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _human_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if count < 1024 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def check_destinations(
    inputs: Mapping[str, str | Sequence[str] | None],
    outputs: Mapping[str, str | None],
    expected_bytes: Mapping[str, int] | None = None,
    info: Callable[[str], None] | None = None,
) -> None:
    """Refuse, before any work, outputs that could not be written or would destroy data.

    Args:
        inputs: parameter name -> input path (or list of paths, e.g. ``INPUTS``); None skips.
        outputs: parameter name -> destination path; None or "" skips (an output not asked for).
        expected_bytes: parameter name -> expected size of that output in bytes (uncompressed
            size is a fair upper bound for speckled floats); used for the free-space check.
        info: receives one line on the expected size of large outputs before the run starts.

    Raises:
        SarDespeckleError: naming the parameter(s) concerned, with what to do.
    """
    named_inputs = [
        (name, path)
        for name, value in inputs.items() if value
        for path in ([value] if isinstance(value, str) else value) if path
    ]
    named_outputs = [(name, os.path.abspath(path)) for name, path in outputs.items() if path]
    for name, path in named_outputs:
        if os.path.isdir(path):
            raise SarDespeckleError(f"{name} '{path}' is a folder: give a file name inside it.")
        folder = os.path.dirname(path)
        if not os.path.isdir(folder):
            raise SarDespeckleError(f"The folder of {name} '{folder}' does not exist: create it first.")
        if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
            raise SarDespeckleError(
                f"Cannot write {name} '{path}': permission denied. Choose another location."
            )
        _probe_folder(name, path)
        for input_name, input_path in named_inputs:
            if os.path.exists(input_path) and _same_file(path, input_path):
                raise SarDespeckleError(
                    f"{name} '{path}' is the same file as {input_name} '{input_path}': writing it "
                    f"would destroy the input. Choose another path for {name}."
                )
    for index, (name, path) in enumerate(named_outputs):
        for other_name, other_path in named_outputs[:index]:
            if _same_file(path, other_path):
                raise SarDespeckleError(
                    f"{other_name} and {name} are the same file '{path}': give each output its own path."
                )
    _check_free_space(named_outputs, expected_bytes or {}, info)


def _probe_folder(name: str, path: str) -> None:
    """Create and delete a partial file beside ``path``: what permissions alone do not tell
    (read-only mounts, special file systems, root's rights)."""
    probe = partial_path(path)
    try:
        with open(probe, "x"):
            pass
        os.remove(probe)
    except OSError as error:
        raise SarDespeckleError(
            f"Cannot write {name} '{path}': {error.strerror}. Choose another location."
        ) from None


#: Outputs at least this large (bytes) have their expected size logged before the run.
LARGE_OUTPUT = 100 * 1024 * 1024


def _check_free_space(named_outputs: list[tuple[str, str]], expected_bytes: Mapping[str, int],
                      info: Callable[[str], None] | None) -> None:
    needed: dict[int, tuple[int, str, list[str]]] = {}  # device -> (bytes, folder, names)
    for name, path in named_outputs:
        size = expected_bytes.get(name, 0)
        if not size:
            continue
        folder = os.path.dirname(path)
        device = os.stat(folder).st_dev
        total, where, names = needed.get(device, (0, folder, []))
        needed[device] = (total + size, where, [*names, name])
    for total, folder, names in needed.values():
        free = shutil.disk_usage(folder).free
        if total + DISK_MARGIN > free:
            raise SarDespeckleError(
                f"Not enough disk space for {' and '.join(names)}: about {_human_bytes(total)} needed, "
                f"{_human_bytes(free)} free in '{folder}'. Free some space or choose another folder."
            )
        if info is not None and total >= LARGE_OUTPUT:
            info(f"{' and '.join(names)} will take about {_human_bytes(total)} in '{folder}' "
                 f"({_human_bytes(free)} free).")


# -- partial files ---------------------------------------------------------------------------

_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<host>[^.]+)-(?P<pid>\d+)\.[0-9a-f]+" + re.escape(PARTIAL_MARK))


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def partial_path(destination: str) -> str:
    """A new hidden file name beside ``destination`` for writing it: ``.NAME.HOST-PID.RANDOM
    .partial.EXT`` (the extension kept so that drivers recognise the format)."""
    folder, base = os.path.split(os.path.abspath(destination))
    extension = os.path.splitext(base)[1]
    return os.path.join(
        folder, f".{base}.{_host()}-{os.getpid()}.{uuid.uuid4().hex[:8]}{PARTIAL_MARK}{extension}"
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(destination: str) -> list[str]:
    """Delete the partial files of ``destination`` whose writer (this host) is gone; returns them."""
    folder, base = os.path.split(os.path.abspath(destination))
    removed = []
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            match = _PARTIAL.match(entry)
            if not match or match["name"] != base or match["host"] != _host():
                continue
            if _process_alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, entry))
                removed.append(entry)
    return removed


def remove_output(path: str) -> None:
    """Delete a written or partial output with its GDAL side-car (``.aux.xml``), if present."""
    for leftover in (path, path + ".aux.xml"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(leftover)


# -- failures ---------------------------------------------------------------------------------


def write_failure(destination: str, detail: str, error_number: int | None = None) -> SarDespeckleError:
    """One line for a write that failed: the disk is full (checked, not guessed), a size limit,
    or GDAL's or the system's own words. The previous file at ``destination`` is kept."""
    folder = os.path.dirname(os.path.abspath(destination))
    lowered = detail.lower()
    with contextlib.suppress(OSError):
        if error_number == errno.ENOSPC or "no space" in lowered or shutil.disk_usage(folder).free < DISK_MARGIN:
            return SarDespeckleError(
                f"The disk is full: '{destination}' was not written (an older file there is kept). "
                f"Free some space in '{folder}' or choose another folder."
            )
    if error_number == errno.EFBIG or "file too large" in lowered:
        return SarDespeckleError(
            f"'{destination}' would pass the file size limit of this system or file system; it was "
            "not written (an older file there is kept). Write to another file system."
        )
    return SarDespeckleError(
        f"Writing '{destination}' failed ({detail.strip() or 'unknown error'}); it was not written "
        "(an older file there is kept)."
    )


# -- committing together -----------------------------------------------------------------------


class Terminated(BaseException):
    """SIGTERM arrived: unwind (deleting partial files), then die of SIGTERM."""


@contextlib.contextmanager
def cleanup_on_terminate() -> Iterator[None]:
    """Within the block, SIGTERM unwinds like Ctrl-C does, so every ``finally`` and ``__exit__``
    deletes its partial files; the process then dies of SIGTERM as the sender expects.

    A no-op outside the main thread or where someone else already handles SIGTERM.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def raise_terminated(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class OutputSet:
    """All outputs of one run, committed together.

    Writers :meth:`stage` their finished partial files; leaving the ``with`` block normally
    renames every one into place, leaving it by any exception (a failed write, a cancel,
    Ctrl-C, SIGTERM) deletes them all and leaves every destination as it was.
    """

    def __init__(self) -> None:
        self._staged: list[tuple[str, str]] = []  # (partial, destination)
        self._terminate_guard = cleanup_on_terminate()

    def stage(self, partial: str, destination: str) -> None:
        """Register a finished partial file to be renamed to ``destination`` on commit."""
        self._staged.append((partial, os.path.abspath(destination)))

    def staged_path(self, destination: str) -> str:
        """Where the staged output for ``destination`` lies until the commit (to read it back)."""
        destination = os.path.abspath(destination)
        for partial, staged_destination in self._staged:
            if staged_destination == destination:
                return partial
        raise KeyError(destination)

    def __enter__(self) -> "OutputSet":
        self._terminate_guard.__enter__()
        return self

    def __exit__(self, exc_type, exc, traceback) -> bool:
        try:
            if exc_type is None:
                self.commit()
            else:
                self.discard()
        finally:
            suppressed = self._terminate_guard.__exit__(exc_type, exc, traceback)
        return bool(suppressed)

    def commit(self) -> None:
        """Rename every staged partial file into place."""
        staged, self._staged = self._staged, []
        try:
            for index, (partial, destination) in enumerate(staged):
                os.replace(partial, destination)
        except OSError as error:
            for partial, _ in staged[index:]:
                remove_output(partial)
            raise write_failure(destination, error.strerror or str(error), error.errno) from None

    def discard(self) -> None:
        """Delete every staged partial file."""
        staged, self._staged = self._staged, []
        for partial, _ in staged:
            remove_output(partial)


@contextlib.contextmanager
def staged_file(destination: str, outputs: OutputSet) -> Iterator[str]:
    """Yield a partial path to write ``destination`` to (JSON reports, PNG pictures, ...);
    staged in ``outputs`` when the block succeeds, deleted when it fails."""
    partial = partial_path(destination)
    try:
        yield partial
    except OSError as error:
        remove_output(partial)
        raise write_failure(destination, error.strerror or str(error), error.errno) from None
    except BaseException:
        remove_output(partial)
        raise
    outputs.stage(partial, destination)

