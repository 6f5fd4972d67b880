"""The catalog's database plumbing: engine, one transaction per operation, and reconnecting.

Every other catalog module runs its queries inside `Database.session()`; nothing outside
`catalog/` opens a session (STYLE.md, pattern 4).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from biomarkerflow.catalog import schema
from biomarkerflow.errors import CatalogError

T = TypeVar("T")
C = TypeVar("C")

# Waits between attempts when the catalog's connection is lost: about a minute in all.
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


def utcnow() -> datetime:
    """Now as the catalog stores times: naive UTC (SQLite drops time zones on the way back)."""
    return datetime.now(UTC).replace(tzinfo=None)


def sqlalchemy_url(url: str) -> str:
    """postgresql://... means the psycopg (v3) driver, the one biomarkerflow installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


WAL_ATTEMPTS = 40  # about 40 s in all, as long as busy_timeout lets a writer wait


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # busy_timeout makes concurrent writers wait instead of failing at once.
    # WAL lets readers (status, query) work while a process run writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    _use_wal(cursor)
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _use_wal(cursor: Any) -> None:
    """Switch the database to WAL, once (it is kept in the file). The switch takes a lock
    SQLite does not wait for even with busy_timeout: several processes opening a new catalog
    at once got "database is locked". Retried briefly; a database already in WAL needs none."""
    for attempt in range(WAL_ATTEMPTS):
        try:
            if str(cursor.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal":
                return
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))


class ConnectionLost(Exception):
    """The database connection broke during a transaction (which was therefore not committed)."""


def _connection_lost(exc: SQLAlchemyError) -> bool:
    return isinstance(exc, OperationalError | InterfaceError) or bool(getattr(exc, "connection_invalidated", False))


class Database:
    """One catalog database: its engine, and the transaction every catalog operation runs in.

    Opening it creates or upgrades the schema; a database that cannot be opened is a
    CatalogError whose hint names the fix.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self._engine: Engine = create_engine(sqlalchemy_url(url), future=True, pool_pre_ping=True)
            if url.startswith("sqlite"):
                event.listen(self._engine, "connect", _sqlite_pragmas)
            schema.upgrade(self._engine)
        except SQLAlchemyError as exc:
            shown = make_url(sqlalchemy_url(url)).render_as_string(hide_password=True)
            hint = (
                "Check --home / BIOMARKERFLOW_HOME points at a writable folder."
                if url.startswith("sqlite")
                else "Check the server is running and the URL is right, e.g. postgresql://user@host:5432/database."
            )
            raise CatalogError(f"cannot open the catalog at {shown}: {exc}", hint=hint) from exc
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    def close(self) -> None:
        self._engine.dispose()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back when it raises.

        A lost connection raises ConnectionLost (see `reconnecting`); any other database
        error becomes a CatalogError.
        """
        session = self._sessions()
        try:
            yield session
            session.commit()
        except SQLAlchemyError as exc:
            with contextlib.suppress(SQLAlchemyError):
                session.rollback()
            if _connection_lost(exc):
                raise ConnectionLost(str(exc)) from exc
            raise CatalogError(f"catalog operation failed: {exc}") from exc
        except BaseException:
            with contextlib.suppress(SQLAlchemyError):
                session.rollback()
            raise
        finally:
            session.close()


def reconnecting(method: Callable[..., T]) -> Callable[..., T]:
    """Re-run a catalog method whose transaction broke on a lost connection.

    Each public method is one transaction, so one that did not commit can run again; a
    database that stays away past RECONNECT_DELAYS is a CatalogError like any other.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        for delay in RECONNECT_DELAYS:
            try:
                return method(*args, **kwargs)
            except ConnectionLost:
                time.sleep(delay)
        try:
            return method(*args, **kwargs)
        except ConnectionLost as exc:
            raise CatalogError(
                f"lost the connection to the catalog and could not reconnect: {exc}",
                hint="Check the database server is up and reachable; nothing was lost, run the command again.",
            ) from exc

    return wrapper


def reconnect_on_lost_connections(cls: type[C]) -> type[C]:
    """Class decorator: every public method (but `close`) reconnects, see `reconnecting`."""
    for name, member in list(vars(cls).items()):
        if not name.startswith("_") and inspect.isfunction(member) and name != "close":
            setattr(cls, name, reconnecting(member))
    return cls
