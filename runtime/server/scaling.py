"""What serving past one process asks of the configuration, checked before anything is
served, and the backplane the configuration names (docs/scaling.md).

Each refusal is a `ServeError` of one line that says why, which `jacc serve`
prints before exiting 1.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..walker import Walker
from .accounts import AccountError, AccountStore
from .auth import SECRET_ENV
from .config import Config
from .program import ServeError
from .ws.backplane import Backplane, BackplaneUnavailable, MemoryBackplane

__all__ = ["check_scale_out", "make_backplane", "open_account_store", "probe_backplane",
           "uses_redis"]


def uses_redis(config: Config) -> bool:
    return config.websocket.backplane != "memory"


def check_scale_out(config: Config, walkers: Sequence[type[Walker]],
                    environ: Mapping[str, str] = os.environ) -> None:
    """Refuse the combinations that would serve something other than what was asked for."""
    workers = config.server.workers
    if workers > 1 and config.server.dev:
        raise ServeError(f"error: --dev reloads one process and cannot be combined with "
                         f"--workers {workers}; serve with one worker while developing")
    broadcasting = [w.__jacc_spec__.name for w in walkers if w.__jacc_spec__.broadcast]
    if workers > 1 and not uses_redis(config) and broadcasting:
        raise ServeError(
            f"error: --workers {workers} with the memory backplane would split the broadcasts "
            f"of {', '.join(broadcasting)} between workers, each reaching only its own "
            f"clients; set websocket.backplane to a Redis URL (docs/scaling.md)")
    if uses_redis(config) and not (config.auth.secret or environ.get(SECRET_ENV)):
        raise ServeError(
            "error: a Redis backplane needs an explicit JWT secret (auth.secret or "
            f"{SECRET_ENV}): a secret generated in .jacc/ belongs to one host, and its "
            "tokens would be refused by the others")


def make_backplane(config: Config) -> Backplane:
    """The backplane `config` names: in memory, or Redis (nothing connects before `start`)."""
    websocket = config.websocket
    if not uses_redis(config):
        return MemoryBackplane(websocket.history)
    from .ws.redis import RedisBackplane
    from .ws.redis_link import RedisLink

    link = RedisLink(websocket.backplane, name=f"{websocket.backplane_namespace}:{os.getpid()}")
    return RedisBackplane(link, websocket.backplane_namespace, websocket.history)


def probe_backplane(config: Config) -> None:
    """Before serving: a Redis that does not answer is a ServeError naming its URL."""
    if not uses_redis(config):
        return
    from .ws.redis_link import RedisLink

    async def probe() -> None:
        link = RedisLink(config.websocket.backplane)
        try:
            await link.open()
        finally:
            await link.close()

    try:
        asyncio.run(probe())
    except BackplaneUnavailable as error:
        raise ServeError(f"error: {error}") from None


def open_account_store(database: Path | str) -> AccountStore:
    """The account store `[auth] database` names: a SQLite file, or PostgreSQL by URL.

    A store that cannot be opened is a ServeError of one line (a PostgreSQL URL
    with its password hidden).
    """
    try:
        if isinstance(database, str):
            from .accounts_pg import PgAccountStore

            return PgAccountStore(database)  # type: ignore[return-value]
        return AccountStore(database)
    except AccountError as error:
        raise ServeError(f"error: {error.message}") from None
    except (ValueError, OSError) as error:
        raise ServeError(f"error: {error}") from None
