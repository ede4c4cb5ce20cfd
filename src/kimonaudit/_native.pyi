# Types of the optional C extension built from _native.c.

from collections.abc import Callable
from typing import Any

def scan(
    path: str, lo: int, hi: int, tenant_json: bytes
) -> tuple[bytes, bytes, list[int], int, int] | None: ...
def leaf(values: tuple[int | str | bytes | None, ...], tenant_json: bytes) -> bytes | None: ...
def node_hashes(row: list[bytes]) -> list[bytes]: ...
def scan_copy(
    data: bytes | bytearray, tenant_json: bytes
) -> tuple[bytes, bytes, list[int], int, int, int, bool] | None: ...
def scan_pg(
    conninfo: str, sql: str, tenant_json: bytes
) -> tuple[bytes, bytes, list[int], int, int] | None: ...
def prepare(
    events: list[Any],
    salts: bytes,
    new_ids: list[str],
    tenant_json: bytes,
    hooks: tuple[Callable[..., Any], ...],
    ips: dict[str, bytes],
    prepared_type: type[Any],
) -> tuple[list[Any], list[bytes], list[bytes]] | None: ...
def leaf_hashes(
    prepared: list[Any],
    heads: list[bytes],
    tails: list[bytes],
    middles: tuple[bytes, bytes],
    seq0: int,
) -> list[bytes]: ...
def uuid7_texts(ms: int, start: int, n: int, rand: bytes) -> list[str]: ...
def copy_binary(rows: list[Any], types: str, columns: tuple[int, ...]) -> bytes: ...
def pair_runs(runs: list[tuple[Any, list[Any]]]) -> list[Any]: ...
def copy_postings(
    tenant_id: str, runs: list[tuple[int, list[int]]], rows: list[tuple[Any, ...]]
) -> bytes: ...
def plan_rows(
    prepared: list[Any],
    leaves: list[bytes],
    seq0: int,
    tenant_id: str,
    recorded_at: int,
    row_type: type[Any],
    receipt_type: type[Any],
) -> tuple[list[Any], list[Any]]: ...
def finish(items: list[Any], context: tuple[Any, ...], from_json: bool = ...) -> list[Any]: ...
def project(
    rows: list[tuple[Any, ...]],
    decode: Callable[[bytes], Any],
    fallback: Callable[[tuple[Any, ...]], str],
) -> tuple[dict[tuple[int, str], list[Any]], list[str]] | None: ...
def tsvectors(texts: list[str]) -> list[bytes | None]: ...

class SQLiteBatch:
    in_transaction: bool
    def __init__(self, path: str, pragmas: list[str]) -> None: ...
    def run(self, steps: list[tuple[str, Any]]) -> list[list[tuple[Any, ...]] | None]: ...
    def close(self) -> None: ...
