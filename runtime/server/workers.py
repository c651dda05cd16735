"""`jacc serve --workers N`: N worker processes serving one port (docs/scaling.md, Workers).

    Supervisor(count=2, serve=serve_one, sock=listening_socket).run()   # -> exit status

**Decision: fork after compiling.** The parent compiles the program once (the
CLI's loader), checks the configuration and Redis, binds the port, and then
forks the workers, which inherit the walker classes as they are: nothing is
compiled, pickled or imported again, and the runtime needs no way to rebuild a
program from parts (uvicorn's own supervisor spawns fresh interpreters, which
would have to). Each worker builds its own app, with its own event loop, Redis
connections and account store, and serves the inherited socket. Like
gunicorn's `--preload`, what the program's top level did before the fork
(open a file, start a thread) is shared by every worker; workers are
single-threaded at the fork, as the parent runs no thread by then.

The parent only supervises: a worker that dies is started again (a worker
that fails while starting stops them all, exit 1); SIGTERM or Ctrl-C sends each
worker one SIGTERM, which drains it as a lone `jacc serve` drains (sockets
closed with 1001), and the parent exits 0 once all are gone. A second signal
kills them. Workers sit in a process group of their own, so that a Ctrl-C in
the terminal reaches the parent alone and each worker gets exactly one signal.
A worker whose parent is gone (killed with -9) drains and exits by itself.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from uvicorn.config import STARTUP_FAILURE

__all__ = ["Supervisor"]

logger = logging.getLogger("jacc.workers")

# A worker that dies this soon after it started, this many times in a row, is not
# started again: something is wrong with every start, not with one worker.
_QUICK_DEATH_SECONDS = 2.0
_QUICK_DEATHS = 5
# After SIGTERM, how long the workers get to drain before they are killed.
_DRAIN_LIMIT_SECONDS = 30.0
_PARENT_CHECK_SECONDS = 1.0
_POLL_SECONDS = 0.1


class Supervisor:
    """Forks `count` workers, each running `serve(sock)`, and keeps them running until a signal;
    `exited(pid)` is called for each worker that ends."""

    def __init__(self, count: int, serve: Callable[[socket.socket], None],
                 sock: socket.socket, exited: Callable[[int], None] = lambda pid: None) -> None:
        self.count = count
        self._serve = serve
        self._sock = sock
        # Told the pid of each worker that ended (the shared metrics let go of its gauges).
        self._exited = exited
        self._workers: dict[int, tuple[int, float]] = {}  # pid -> (slot, started at)
        self._stopping = False
        self._killing = False
        self._failed = False
        self._quick_deaths = 0
        self._stop_deadline = 0.0

    def run(self) -> int:
        """Serve until a signal; the exit status: 0 after a drain, 1 if workers cannot start."""
        previous = {sig: signal.signal(sig, self._on_signal)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for slot in range(self.count):
                self._spawn(slot)
            self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._sock.close()
        return 1 if self._failed else 0

    # --- the parent ------------------------------------------------------------------

    def _spawn(self, slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            self._become_worker(slot)  # never returns
        self._workers[pid] = (slot, time.monotonic())
        logger.info("worker %d started (pid %d)", slot + 1, pid)

    def _supervise(self) -> None:
        while self._workers:
            pid, status = self._wait()
            if pid == 0:
                continue
            slot, started = self._workers.pop(pid)
            self._exited(pid)
            code = os.waitstatus_to_exitcode(status)
            if self._stopping:
                continue
            if code == STARTUP_FAILURE:
                logger.error("worker %d (pid %d) could not start: stopping", slot + 1, pid)
                self._fail()
                continue
            self._restart(slot, pid, code, time.monotonic() - started)

    def _wait(self) -> tuple[int, int]:
        """A worker that ended, or (0, 0) after a short sleep (signals are handled meanwhile)."""
        if self._stopping and time.monotonic() > self._stop_deadline and not self._killing:
            logger.warning("workers did not drain within %g s: killing them",
                           _DRAIN_LIMIT_SECONDS)
            self._signal_all(signal.SIGKILL)
            self._killing = True
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            self._workers.clear()
            return 0, 0
        if pid == 0:
            time.sleep(_POLL_SECONDS)
        return pid, status

    def _restart(self, slot: int, pid: int, code: int, lived: float) -> None:
        how = f"signal {-code}" if code < 0 else f"status {code}"
        self._quick_deaths = self._quick_deaths + 1 if lived < _QUICK_DEATH_SECONDS else 0
        if self._quick_deaths >= _QUICK_DEATHS:
            logger.error("worker %d (pid %d) exited with %s; workers keep dying at start: "
                         "stopping", slot + 1, pid, how)
            self._fail()
            return
        logger.warning("worker %d (pid %d) exited with %s; starting another", slot + 1, pid, how)
        self._spawn(slot)

    def _fail(self) -> None:
        self._failed = True
        self._stop()

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._stopping:
            logger.warning("second signal: killing the workers")
            self._signal_all(signal.SIGKILL)
            self._killing = True
            return
        logger.info("stopping %d worker(s)", len(self._workers))
        self._stop()

    def _stop(self) -> None:
        self._stopping = True
        self._stop_deadline = time.monotonic() + _DRAIN_LIMIT_SECONDS
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, sig: int) -> None:
        for pid in list(self._workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    # --- a worker --------------------------------------------------------------------

    def _become_worker(self, slot: int) -> None:
        code = 0
        try:
            os.setpgid(0, 0)  # a Ctrl-C in the terminal is the parent's to pass on
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_DFL)  # uvicorn installs its own
            _exit_with_parent(os.getppid())
            self._serve(self._sock)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
        except BaseException:
            logger.exception("worker %d failed", slot + 1)
            code = 1
        finally:
            logging.shutdown()
            os._exit(code)


def _exit_with_parent(parent: int) -> None:
    """Drain and exit once the parent is gone (it was killed without a chance to tell us)."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_SECONDS)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="jacc-parent-watch", daemon=True).start()
