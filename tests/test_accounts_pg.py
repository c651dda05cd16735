"""What only the PostgreSQL account store has (runtime/server/accounts_pg.py): a server to
reach, and a schema that several hosts create at once. Its behaviour as a store is the
shared suite of test_accounts.py."""

from __future__ import annotations

import threading

import psycopg
import pytest
from services import free_port

from jacc_runtime.server.accounts_pg import (
    AccountStoreUnavailable,
    PgAccountStore,
    is_postgres_url,
)


def test_an_unreachable_database_names_its_url_without_the_password():
    with pytest.raises(AccountStoreUnavailable) as caught:
        PgAccountStore(f"postgresql://jacc:hunter2@127.0.0.1:{free_port()}/jacc")
    message = str(caught.value)
    assert message.startswith("cannot reach PostgreSQL at postgresql://jacc:***@127.0.0.1:")
    assert "hunter2" not in message
    assert (caught.value.code, caught.value.status) == ("SERVICE_UNAVAILABLE", 503)


def test_hosts_opening_a_new_database_at_once_make_its_schema_once(postgres_url):
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            PgAccountStore(postgres_url).close()
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*), max(version) FROM jacc_schema").fetchone() == (1, 1)


def test_a_schema_from_a_newer_jacc_is_refused(postgres_url):
    PgAccountStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE jacc_schema SET version = 99")
    with pytest.raises(ValueError, match="newer jacc"):
        PgAccountStore(postgres_url)


def test_postgres_urls():
    assert is_postgres_url("postgresql://h/db") and is_postgres_url("postgres://h/db")
    assert not is_postgres_url("users.db") and not is_postgres_url(None)
