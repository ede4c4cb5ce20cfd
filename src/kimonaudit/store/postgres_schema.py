"""PostgreSQL schema, as numbered migrations applied in order on open, and
the monthly partitions of ``entries``.

Tables are created unqualified, so they land in the first schema of the
connection's search_path. A migration is never edited once released; a
change is a new number.

Every primary key, unique index and query starts with ``tenant_id``: the
same schema distributes by tenant on Citus (docs/scaling.md).
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta

# Two-int advisory lock keys: (namespace, hashtext(current_schema())), so two
# deployments in different schemas of one database do not wait on each other.
LOCK_MIGRATE = 0x4B41_0001
LOCK_PARTITION = 0x4B41_0002

DEFAULT_PARTITION = "entries_default"

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE tenants (
            tenant_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            plan TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            retention_months INTEGER NOT NULL,
            legal_hold BOOLEAN NOT NULL DEFAULT false
        );
        CREATE TABLE tree_state (
            tenant_id TEXT PRIMARY KEY,
            size BIGINT NOT NULL,
            frontier BYTEA NOT NULL,
            last_recorded_at BIGINT NOT NULL,
            purged BIGINT NOT NULL DEFAULT 0
        );
        -- Partitioned by month of recorded_at (µs since the epoch, UTC) so
        -- retention drops whole partitions. The partition key must be in the
        -- primary key; (tenant_id, seq) alone is kept unique by the writer,
        -- which appends to a tenant only under its tree_state row lock.
        CREATE TABLE entries (
            tenant_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            event_id TEXT NOT NULL,
            recorded_at BIGINT NOT NULL,
            action TEXT NOT NULL,
            category TEXT NOT NULL,
            severity INTEGER NOT NULL,
            security BOOLEAN NOT NULL,
            actor_hash TEXT,
            actor_type TEXT,
            target_type TEXT,
            target_id TEXT,
            outcome TEXT NOT NULL,
            occurred_at BIGINT,
            ip BYTEA,
            payload BYTEA,
            salt BYTEA,
            payload_commitment BYTEA NOT NULL,
            leaf_hash BYTEA NOT NULL,
            search_text TEXT NOT NULL,
            PRIMARY KEY (tenant_id, seq, recorded_at)
        ) PARTITION BY RANGE (recorded_at);
        -- Safety net only: the writer creates each month's partition before
        -- its first row, so rows land here only if that ever failed.
        CREATE TABLE entries_default PARTITION OF entries DEFAULT;
        CREATE INDEX entries_action ON entries (tenant_id, action, seq);
        CREATE INDEX entries_actor ON entries (tenant_id, actor_hash, seq);
        CREATE INDEX entries_target ON entries (tenant_id, target_type, target_id, seq);
        CREATE INDEX entries_recorded ON entries (tenant_id, recorded_at);
        CREATE INDEX entries_security ON entries (tenant_id, seq) WHERE security;
        -- The query compiler matches exactly this expression.
        CREATE INDEX entries_search ON entries USING gin (to_tsvector('simple', search_text));
        -- Idempotency of client event ids. A unique index on a partitioned
        -- table must contain the partition key, which would make it useless
        -- here, so the ids live in their own table, written in the same
        -- transaction as the entries.
        CREATE TABLE event_ids (
            tenant_id TEXT NOT NULL,
            event_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            leaf_hash BYTEA NOT NULL,
            PRIMARY KEY (tenant_id, event_id)
        );
        CREATE TABLE tree_nodes (
            tenant_id TEXT NOT NULL,
            level INTEGER NOT NULL,
            idx BIGINT NOT NULL,
            hash BYTEA NOT NULL,
            PRIMARY KEY (tenant_id, level, idx)
        );
        CREATE TABLE checkpoints (
            tenant_id TEXT NOT NULL,
            size BIGINT NOT NULL,
            root BYTEA NOT NULL,
            note TEXT NOT NULL,
            issued_at BIGINT NOT NULL,
            key_id BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, size)
        );
        CREATE TABLE actors (
            tenant_id TEXT NOT NULL,
            actor_hash TEXT NOT NULL,
            actor_id TEXT,
            actor_type TEXT,
            name TEXT,
            email TEXT,
            updated_at BIGINT NOT NULL,
            erased_at BIGINT,
            PRIMARY KEY (tenant_id, actor_hash)
        );
        CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            scopes TEXT NOT NULL,
            secret_hash BYTEA NOT NULL,
            created_at BIGINT NOT NULL,
            revoked_at BIGINT,
            last_used_at BIGINT
        );
        CREATE INDEX api_keys_tenant ON api_keys (tenant_id);
        """,
    ),
    # == Console (owned by the console work): users, sessions, saved searches.
    (
        2,
        """
        CREATE TABLE console_users (
            tenant_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            email TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            disabled_at BIGINT,
            PRIMARY KEY (tenant_id, user_id)
        );
        CREATE UNIQUE INDEX console_users_email ON console_users (tenant_id, email);
        -- Only the SHA-256 of a session's token is stored.
        CREATE TABLE console_sessions (
            tenant_id TEXT NOT NULL,
            token_hash BYTEA NOT NULL,
            user_id TEXT NOT NULL,
            csrf_secret BYTEA NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, token_hash)
        );
        CREATE INDEX console_sessions_user ON console_sessions (tenant_id, user_id);
        CREATE INDEX console_sessions_expiry ON console_sessions (tenant_id, expires_at);
        CREATE TABLE console_saved_searches (
            tenant_id TEXT NOT NULL,
            search_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            name TEXT NOT NULL,
            query TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, search_id)
        );
        CREATE UNIQUE INDEX console_saved_searches_name
            ON console_saved_searches (tenant_id, user_id, name);
        """,
    ),
    # == Search (owned by the search work). action:ticket.* compiles to LIKE
    # 'ticket.%', which a btree serves only with text_pattern_ops under a
    # non-C collation; that index also serves equality and the seq order, so
    # it replaces entries_action. is:failure / outcome: and ip: are the
    # investigator's filters; without an index a rare value (or none at all)
    # means reading every entry of the tenant. seq beside recorded_at turns
    # a created: time into a seq bound with one index probe.
    (
        3,
        """
        CREATE INDEX entries_action_pattern ON entries (tenant_id, action text_pattern_ops, seq);
        DROP INDEX entries_action;
        CREATE INDEX entries_outcome ON entries (tenant_id, outcome, seq);
        CREATE INDEX entries_ip ON entries (tenant_id, ip, seq);
        CREATE INDEX entries_recorded_seq ON entries (tenant_id, recorded_at, seq);
        DROP INDEX entries_recorded;
        """,
    ),
    # == The write path (issue 7): `entries` becomes a lean ledger. The
    # acknowledging transaction keeps only its primary key; the search
    # indexes and the stored document go, replaced by a projection that the
    # indexer (store/postgres_index.py) writes in large sorted batches:
    # - search_terms: a tenant's posting terms (field number, value; see
    #   kimonaudit.core.projection) numbered, with how many entries hold each,
    #   so a 64-hex actor hash or a long target id is stored once, not per entry;
    # - search_postings: (term, seq) per entry and term. recorded_at rides
    #   along (in the index too) so the join back to `entries` prunes to one
    #   monthly partition;
    # - search_docs: each entry's free-text document as a stored tsvector
    #   with a GIN index: a phrase is rechecked on the stored vector instead
    #   of re-parsing text for every candidate;
    # - search_marks: per tenant, the seq below which everything is indexed
    #   (the high-water mark, written in each batch's transaction; its row
    #   lock is what makes one indexer at a time work on a tenant).
    # Every key starts with tenant_id, as everywhere else (Citus co-location).
    # An upgraded database starts with no marks: the indexer builds it all.
    (
        5,
        """
        DROP INDEX IF EXISTS entries_action_pattern;
        DROP INDEX IF EXISTS entries_actor;
        DROP INDEX IF EXISTS entries_target;
        DROP INDEX IF EXISTS entries_security;
        DROP INDEX IF EXISTS entries_search;
        DROP INDEX IF EXISTS entries_outcome;
        DROP INDEX IF EXISTS entries_ip;
        DROP INDEX IF EXISTS entries_recorded_seq;
        ALTER TABLE entries DROP COLUMN search_text;
        CREATE TABLE search_terms (
            tenant_id TEXT NOT NULL,
            term BIGINT GENERATED ALWAYS AS IDENTITY,
            field SMALLINT NOT NULL,
            value TEXT NOT NULL,
            n BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (tenant_id, term),
            UNIQUE (tenant_id, field, value)
        );
        CREATE TABLE search_postings (
            tenant_id TEXT NOT NULL,
            term BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, term, seq) INCLUDE (recorded_at)
        );
        CREATE TABLE search_docs (
            tenant_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            recorded_at BIGINT NOT NULL,
            doc TSVECTOR NOT NULL,
            PRIMARY KEY (tenant_id, seq)
        );
        CREATE INDEX search_docs_doc ON search_docs USING gin (doc);
        -- purged: the projection holds nothing below it (the indexer removes
        -- what a retention purge left behind).
        CREATE TABLE search_marks (
            tenant_id TEXT PRIMARY KEY,
            next_seq BIGINT NOT NULL,
            purged BIGINT NOT NULL DEFAULT 0
        );
        """,
    ),
    # == Retention, erasure, redaction (owned by the retention work, issue 8);
    # see sqlite_schema.py for what each is for.
    (
        6,
        """
        CREATE TABLE tenant_settings (
            tenant_id TEXT PRIMARY KEY,
            retention_custom INTEGER,
            directory_epoch BIGINT NOT NULL DEFAULT 0
        );
        CREATE TABLE actor_secrets (
            tenant_id TEXT NOT NULL,
            lookup TEXT NOT NULL,
            secret BYTEA NOT NULL,
            created_at BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, lookup)
        );
        CREATE INDEX actors_id ON actors (tenant_id, actor_id);
        CREATE TABLE redactions (
            tenant_id TEXT NOT NULL,
            seq BIGINT NOT NULL,
            reason TEXT NOT NULL,
            redacted_at BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, seq)
        );
        """,
    ),
    # == Retention (issue 8): for each checkpoint issued before a purge point,
    # the consistency proof from it to that point (old_root included), kept
    # because its leaves are gone; the purged prefix's compact range lives in
    # tree_nodes and its size in tree_state.purged (docs/integrity.md).
    (
        7,
        """
        CREATE TABLE purge_proofs (
            tenant_id TEXT NOT NULL,
            old_size BIGINT NOT NULL,
            new_size BIGINT NOT NULL,
            old_root BYTEA NOT NULL,
            proof BYTEA NOT NULL,
            PRIMARY KEY (tenant_id, old_size, new_size)
        );
        """,
    ),
    # == Limits shared by every process on this database (harden, issue 10):
    # the per-API-key token buckets and the console's sign-in throttle.
    # Times are the database's clock (epoch seconds), so processes agree.
    (
        8,
        """
        CREATE TABLE api_rate_buckets (
            key_id TEXT PRIMARY KEY,
            tokens DOUBLE PRECISION NOT NULL,
            at DOUBLE PRECISION NOT NULL,
            ok BOOLEAN NOT NULL
        );
        CREATE TABLE signin_throttle (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            locked_until DOUBLE PRECISION NOT NULL,
            last DOUBLE PRECISION NOT NULL,
            refusal_noted BOOLEAN NOT NULL
        );
        CREATE INDEX signin_throttle_last ON signin_throttle (last);
        """,
    ),
    # == Streaming (owned by the streaming work): SIEM destinations, their
    # delivery cursor and lease, and lag samples for the console's chart.
    (
        10,
        """
        CREATE TABLE destinations (
            tenant_id TEXT NOT NULL,
            destination_id TEXT NOT NULL,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            format TEXT NOT NULL,
            config TEXT NOT NULL,
            sealed BYTEA NOT NULL,
            state TEXT NOT NULL,
            state_reason TEXT,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            PRIMARY KEY (tenant_id, destination_id)
        );
        CREATE TABLE destination_delivery (
            tenant_id TEXT NOT NULL,
            destination_id TEXT NOT NULL,
            next_seq BIGINT NOT NULL,
            cp_size BIGINT NOT NULL,
            inflight TEXT,
            attempts BIGINT NOT NULL,
            next_attempt_at BIGINT NOT NULL,
            lease_owner TEXT,
            lease_until BIGINT NOT NULL,
            last_success_at BIGINT,
            last_error_at BIGINT,
            last_error TEXT,
            delivered_events BIGINT NOT NULL,
            delivered_checkpoints BIGINT NOT NULL,
            delivered_batches BIGINT NOT NULL,
            failed_attempts BIGINT NOT NULL,
            last_delivered_at BIGINT,
            PRIMARY KEY (tenant_id, destination_id)
        );
        CREATE TABLE destination_lag (
            tenant_id TEXT NOT NULL,
            destination_id TEXT NOT NULL,
            at BIGINT NOT NULL,
            lag_events BIGINT NOT NULL,
            lag_seconds DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (tenant_id, destination_id, at)
        );
        """,
    ),
    # == The API rate buckets without WAL (issue 10): a logged bucket made
    # every API request wait for a WAL flush and serialised one key's
    # requests on that flush (about 500 requests/s per key, 2-3 ms each on
    # the project's machine). Unlogged, a crash of PostgreSQL itself empties
    # the buckets (full ones: a short burst allowance); a restart of `serve`
    # or a clean restart of PostgreSQL keeps them. The sign-in throttle
    # stays logged: lockouts must survive a database crash.
    (
        11,
        """
        ALTER TABLE api_rate_buckets SET UNLOGGED;
        """,
    ),
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def month_of(recorded_at: int) -> tuple[int, int] | None:
    """(year, month) of a µs timestamp, or None outside what a partition
    name can express (such rows go to the default partition)."""
    try:
        d = _EPOCH + timedelta(microseconds=recorded_at)
    except OverflowError:
        return None
    return (d.year, d.month) if d.year >= 1970 else None


def next_month(month: tuple[int, int]) -> tuple[int, int]:
    y, m = month
    return (y + 1, 1) if m == 12 else (y, m + 1)


def partition_name(month: tuple[int, int]) -> str:
    return f"entries_p{month[0]:04d}{month[1]:02d}"


def month_bounds(month: tuple[int, int]) -> tuple[int, int]:
    """[start, end) of a calendar month in µs since the epoch, UTC."""
    y, m = month
    ny, nm = next_month(month)
    start = calendar.timegm((y, m, 1, 0, 0, 0)) * 1_000_000
    end = calendar.timegm((ny, nm, 1, 0, 0, 0)) * 1_000_000
    return start, end


def create_partition_sql(month: tuple[int, int]) -> str:
    # Only integers and a name built from them are interpolated.
    start, end = month_bounds(month)
    return (
        f"CREATE TABLE IF NOT EXISTS {partition_name(month)} PARTITION OF entries "
        f"FOR VALUES FROM ({start}) TO ({end})"
    )
