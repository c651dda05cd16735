"""Dev mode (docs/protocol.md#dev-mode): watch the app's source, rebuild on a change,
swap the walkers.

    reloader = DevReloader(app, Path("app.jac"), load)   # adds GET /__jacc/status
    reloader.start()       # inside the server's event loop
    ...
    await reloader.stop()

A good build replaces the app's walkers with `JaccApp.set_walkers`: the next
frame on every open connection runs the new code, new walkers are routed, and
the connections of a walker that went away (or changed protocol, or between
public and private) are closed with 1012. A build with errors changes nothing
that is served: its diagnostics go to stderr and to `/__jacc/status` until an
edit fixes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import watchfiles
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .app import JaccApp
from .program import BuildFailed, Loader
from .protocol import encode

__all__ = ["STATUS_PATH", "BuildStatus", "DevReloader"]

logger = logging.getLogger("jacc.reload")

STATUS_PATH = "/__jacc/status"

# Editors save in bursts (truncate, write, rename, touch): a batch of file events
# ends once none has come for _QUIET_MS, or after _MAX_BATCH_MS of steady events.
_QUIET_MS = 50
_MAX_BATCH_MS = 1000

@dataclass(frozen=True)
class BuildStatus:
    """The outcome of the latest build, as `GET /__jacc/status` shows it.

    `version` counts the good builds, starting at 1 for the program `serve`
    started with: it names the version being served, which a failed build does
    not change. `builds` counts every attempt, good or not. `changes` names the
    walkers that the build of `version` added, removed, or made reconnect (1012).
    """

    ok: bool
    version: int
    builds: int
    file: str
    walkers: tuple[str, ...]
    diagnostics: tuple[dict, ...] = ()
    rendered: str = ""
    changes: dict = field(default_factory=dict)

    def as_json(self) -> dict:
        return {
            "ok": self.ok,
            "version": self.version,
            "builds": self.builds,
            "file": self.file,
            "walkers": list(self.walkers),
            "diagnostics": list(self.diagnostics),
            "rendered": self.rendered,
            "changes": self.changes,
        }


class DevReloader:
    """Owns the watch task of one app; `load` builds a path's walker classes (or raises
    `BuildFailed`).

    The app must already serve the program at `path`; the reloader adds the
    status route to it at once.
    """

    def __init__(self, app: JaccApp, path: Path, load: Loader, *,
                 out: TextIO | None = None, force_polling: bool | None = None) -> None:
        self._app = app
        self._path = Path(path)
        self._load = load
        self._out = out
        self._force_polling = force_polling
        self._served = _digest(self._path)
        self._lock = asyncio.Lock()
        self._stop: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.status = BuildStatus(ok=True, version=1, builds=1, file=str(path),
                                  walkers=tuple(app.bindings))
        app.add_route(Route(STATUS_PATH, self._status_endpoint, methods=["GET"]))

    # --- the watch task ------------------------------------------------------------

    def start(self) -> None:
        """Start watching; call from the event loop that serves the app."""
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        """Stop watching and wait for a build in progress to finish."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stop.set()  # the watcher thread notices within _QUIET_MS
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _watch(self) -> None:
        # The folder, not the file: an editor that saves by renaming a new file
        # over the old one would leave a watch on the file itself watching nothing.
        folder = self._path.absolute().parent
        name = self._path.name
        # Changes made between the first build and the start of the watch.
        if _digest(self._path) != self._served:
            await self.reload()
        async for _changes in watchfiles.awatch(
            folder,
            watch_filter=lambda _change, changed: Path(changed).name == name,
            step=_QUIET_MS,
            debounce=_MAX_BATCH_MS,
            stop_event=self._stop,
            recursive=False,
            force_polling=self._force_polling,
        ):
            try:
                await self.reload()
            except Exception:
                # Never let a reload bug end the watch: the old version keeps serving.
                logger.exception("dev reload failed")

    # --- one build -----------------------------------------------------------------

    async def reload(self) -> BuildStatus:
        """Recompile the source and, if it is good, serve it; return the new status."""
        async with self._lock:
            digest = _digest(self._path)
            if digest == b"":
                # An editor truncates before it writes: an empty file is a save in progress.
                return self.status
            if self.status.ok and digest == self._served:
                return self.status  # touched or saved unchanged: nothing to do
            previous = self.status
            builds = previous.builds + 1
            try:
                walkers = await asyncio.to_thread(self._load, self._path)
            except BuildFailed as failed:
                self.status = self._failed(failed, builds)
                self._report_failure()
                return self.status
            before = dict(self._app.bindings)
            closed = self._app.set_walkers(walkers)
            self._served = digest
            self.status = BuildStatus(
                ok=True, version=previous.version + 1, builds=builds, file=str(self._path),
                walkers=tuple(self._app.bindings),
                changes=_changes(before, self._app.bindings, closed),
            )
            self._report_success(fixed=not previous.ok)
            return self.status

    def _failed(self, failed: BuildFailed, builds: int) -> BuildStatus:
        old = self.status
        return BuildStatus(ok=False, version=old.version, builds=builds, file=str(self._path),
                           walkers=old.walkers, diagnostics=failed.diagnostics,
                           rendered=failed.rendered, changes=old.changes)

    def _report_failure(self) -> None:
        status = self.status
        out = self._out or sys.stderr
        print(status.rendered, file=out)
        print(f"jacc --dev: {status.file} has errors; still serving version {status.version}"
              f" (details at {STATUS_PATH})", file=out, flush=True)

    def _report_success(self, fixed: bool) -> None:
        status = self.status
        parts = [f"{key} {', '.join(names)}" for key, names in status.changes.items() if names]
        summary = "; ".join(parts) if parts else "same walkers"
        logger.info("reloaded %s: version %d%s; %s", status.file, status.version,
                    " (errors fixed)" if fixed else "", summary)

    async def _status_endpoint(self, request: Request) -> Response:
        return Response(encode(self.status.as_json()), media_type="application/json",
                        headers={"Cache-Control": "no-store"})


def _digest(path: Path) -> bytes | None:
    """A hash of the file's bytes; b"" for an empty file, None for none at all."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return hashlib.sha256(data).digest() if data else b""


def _changes(before: dict, after: dict, closed: dict[str, str]) -> dict[str, list[str]]:
    return {
        "added": [name for name in after if name not in before],
        "removed": [name for name in before if name not in after],
        "reconnecting": [name for name in closed if name in after],
    }
