"""SQLite schema, as numbered migrations applied in order on open.

A migration is never edited once released; a change is a new number.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE tenants (
            tenant_id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            plan TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            retention_months INTEGER NOT NULL,
            legal_hold INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE tree_state (
            tenant_id TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            frontier BLOB NOT NULL,
            last_recorded_at INTEGER NOT NULL,
            purged INTEGER NOT NULL DEFAULT 0
        );
        -- rid exists only because FTS5 needs an integer rowid: (tenant_id, seq)
        -- is the key everything else uses.
        CREATE TABLE entries (
            rid INTEGER PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            event_id TEXT NOT NULL,
            recorded_at INTEGER NOT NULL,
            action TEXT NOT NULL,
            category TEXT NOT NULL,
            severity INTEGER NOT NULL,
            security INTEGER NOT NULL,
            actor_hash TEXT,
            actor_type TEXT,
            target_type TEXT,
            target_id TEXT,
            outcome TEXT NOT NULL,
            occurred_at INTEGER,
            ip BLOB,
            payload BLOB,
            salt BLOB,
            payload_commitment BLOB NOT NULL,
            leaf_hash BLOB NOT NULL,
            search_text TEXT NOT NULL
        );
        CREATE UNIQUE INDEX entries_seq ON entries (tenant_id, seq);
        CREATE UNIQUE INDEX entries_event_id ON entries (tenant_id, event_id);
        CREATE INDEX entries_action ON entries (tenant_id, action, seq);
        CREATE INDEX entries_actor ON entries (tenant_id, actor_hash, seq);
        CREATE INDEX entries_target ON entries (tenant_id, target_type, target_id, seq);
        CREATE INDEX entries_recorded ON entries (tenant_id, recorded_at);
        CREATE INDEX entries_security ON entries (tenant_id, seq) WHERE security = 1;
        -- Contentless: the text already lives in entries.search_text, from
        -- which redaction and purge issue FTS5 'delete' commands.
        CREATE VIRTUAL TABLE entries_fts USING fts5 (text, content = '');
        CREATE TABLE tree_nodes (
            tenant_id TEXT NOT NULL,
            level INTEGER NOT NULL,
            idx INTEGER NOT NULL,
            hash BLOB NOT NULL,
            PRIMARY KEY (tenant_id, level, idx)
        ) WITHOUT ROWID;
        CREATE TABLE checkpoints (
            tenant_id TEXT NOT NULL,
            size INTEGER NOT NULL,
            root BLOB NOT NULL,
            note TEXT NOT NULL,
            issued_at INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, size)
        ) WITHOUT ROWID;
        CREATE TABLE actors (
            tenant_id TEXT NOT NULL,
            actor_hash TEXT NOT NULL,
            actor_id TEXT,
            actor_type TEXT,
            name TEXT,
            email TEXT,
            updated_at INTEGER NOT NULL,
            erased_at INTEGER,
            PRIMARY KEY (tenant_id, actor_hash)
        ) WITHOUT ROWID;
        CREATE TABLE api_keys (
            key_id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            scopes TEXT NOT NULL,
            secret_hash BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            revoked_at INTEGER,
            last_used_at INTEGER
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
            created_at INTEGER NOT NULL,
            disabled_at INTEGER,
            PRIMARY KEY (tenant_id, user_id)
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX console_users_email ON console_users (tenant_id, email);
        -- Only the SHA-256 of a session's token is stored.
        CREATE TABLE console_sessions (
            tenant_id TEXT NOT NULL,
            token_hash BLOB NOT NULL,
            user_id TEXT NOT NULL,
            csrf_secret BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            expires_at INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, token_hash)
        ) WITHOUT ROWID;
        CREATE INDEX console_sessions_user ON console_sessions (tenant_id, user_id);
        CREATE INDEX console_sessions_expiry ON console_sessions (tenant_id, expires_at);
        CREATE TABLE console_saved_searches (
            tenant_id TEXT NOT NULL,
            search_id TEXT NOT NULL,
            user_id TEXT NOT NULL,
            name TEXT NOT NULL,
            query TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, search_id)
        ) WITHOUT ROWID;
        CREATE UNIQUE INDEX console_saved_searches_name
            ON console_saved_searches (tenant_id, user_id, name);
        """,
    ),
    # == Search (owned by the search work): is:failure / outcome: and ip: are
    # the investigator's filters; without an index a rare value (or none at
    # all) means reading every entry of the tenant.
    (
        3,
        """
        CREATE INDEX entries_outcome ON entries (tenant_id, outcome, seq);
        CREATE INDEX entries_ip ON entries (tenant_id, ip, seq);
        """,
    ),
    # == The write path (issue 7): a lean ledger written by the acknowledging
    # transaction; everything search needs moves to the projection in the
    # index file (store/sqlite_index.py), built by the indexer.
    # rid = tenant_no << 40 | seq keeps each tenant's entries contiguous and in
    # seq order in the table's own B-tree, so an append writes at the end of
    # its tenant's range and a seq range is a rowid range.
    (
        4,
        """
        ALTER TABLE tenants ADD COLUMN tenant_no INTEGER;
        UPDATE tenants SET tenant_no = rowid;
        CREATE UNIQUE INDEX tenants_no ON tenants (tenant_no);
        CREATE TABLE ledger (
            rid INTEGER PRIMARY KEY,
            seq INTEGER GENERATED ALWAYS AS (rid & 1099511627775) VIRTUAL,
            tenant_no INTEGER NOT NULL,
            event_id TEXT NOT NULL,
            recorded_at INTEGER NOT NULL,
            action TEXT NOT NULL,
            category TEXT NOT NULL,
            severity INTEGER NOT NULL,
            security INTEGER NOT NULL,
            actor_hash TEXT,
            actor_type TEXT,
            target_type TEXT,
            target_id TEXT,
            outcome TEXT NOT NULL,
            occurred_at INTEGER,
            ip BLOB,
            payload BLOB,
            salt BLOB,
            payload_commitment BLOB NOT NULL,
            leaf_hash BLOB NOT NULL
        );
        CREATE UNIQUE INDEX ledger_event_id ON ledger (tenant_no, event_id);
        INSERT INTO ledger (rid, tenant_no, event_id, recorded_at, action, category, severity,
                            security, actor_hash, actor_type, target_type, target_id, outcome,
                            occurred_at, ip, payload, salt, payload_commitment, leaf_hash)
            SELECT (t.tenant_no << 40) | e.seq, t.tenant_no, e.event_id, e.recorded_at,
                   e.action, e.category, e.severity, e.security, e.actor_hash, e.actor_type,
                   e.target_type, e.target_id, e.outcome, e.occurred_at, e.ip, e.payload,
                   e.salt, e.payload_commitment, e.leaf_hash
            FROM entries e JOIN tenants t ON t.tenant_id = e.tenant_id
            ORDER BY t.tenant_no, e.seq;
        DROP TABLE entries_fts;
        DROP TABLE entries;
        """,
    ),
    # == Retention, erasure, redaction (owned by the retention work, issue 8).
    # tenant_settings.retention_custom: a tenant's own retention in months (NULL: its plan's).
    # directory_epoch grows at each erasure, so other processes drop cached
    # actor hashes. actor_secrets holds each actor's random secret, the only
    # way from an actor id to the hash in the leaves: erasure deletes it.
    (
        6,
        """
        CREATE TABLE tenant_settings (
            tenant_id TEXT PRIMARY KEY,
            retention_custom INTEGER,
            directory_epoch INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE actor_secrets (
            tenant_id TEXT NOT NULL,
            lookup TEXT NOT NULL,
            secret BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, lookup)
        ) WITHOUT ROWID;
        CREATE INDEX actors_id ON actors (tenant_id, actor_id);
        CREATE TABLE redactions (
            tenant_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            reason TEXT NOT NULL,
            redacted_at INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, seq)
        ) WITHOUT ROWID;
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
            old_size INTEGER NOT NULL,
            new_size INTEGER NOT NULL,
            old_root BLOB NOT NULL,
            proof BLOB NOT NULL,
            PRIMARY KEY (tenant_id, old_size, new_size)
        );
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
            sealed BLOB NOT NULL,
            state TEXT NOT NULL,
            state_reason TEXT,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            PRIMARY KEY (tenant_id, destination_id)
        ) WITHOUT ROWID;
        CREATE TABLE destination_delivery (
            tenant_id TEXT NOT NULL,
            destination_id TEXT NOT NULL,
            next_seq INTEGER NOT NULL,
            cp_size INTEGER NOT NULL,
            inflight TEXT,
            attempts INTEGER NOT NULL,
            next_attempt_at INTEGER NOT NULL,
            lease_owner TEXT,
            lease_until INTEGER NOT NULL,
            last_success_at INTEGER,
            last_error_at INTEGER,
            last_error TEXT,
            delivered_events INTEGER NOT NULL,
            delivered_checkpoints INTEGER NOT NULL,
            delivered_batches INTEGER NOT NULL,
            failed_attempts INTEGER NOT NULL,
            last_delivered_at INTEGER,
            PRIMARY KEY (tenant_id, destination_id)
        ) WITHOUT ROWID;
        CREATE TABLE destination_lag (
            tenant_id TEXT NOT NULL,
            destination_id TEXT NOT NULL,
            at INTEGER NOT NULL,
            lag_events INTEGER NOT NULL,
            lag_seconds REAL NOT NULL,
            PRIMARY KEY (tenant_id, destination_id, at)
        ) WITHOUT ROWID;
        """,
    ),
]

# The projection's own file (<database>-index): rebuildable from the ledger
# at any time, so its schema changes by starting it over (INDEX_VERSION).
INDEX_VERSION = 1
INDEX_SCHEMA = """
    CREATE TABLE IF NOT EXISTS index_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS terms (
        term INTEGER PRIMARY KEY,
        tenant_no INTEGER NOT NULL,
        field INTEGER NOT NULL,
        value TEXT NOT NULL,
        n INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX IF NOT EXISTS terms_key ON terms (tenant_no, field, value);
    CREATE TABLE IF NOT EXISTS postings (
        term INTEGER NOT NULL,
        rid INTEGER NOT NULL,
        PRIMARY KEY (term, rid)
    ) WITHOUT ROWID;
    CREATE VIRTUAL TABLE IF NOT EXISTS entries_fts USING fts5 (text, content = '');
    CREATE TABLE IF NOT EXISTS indexed (
        tenant_no INTEGER PRIMARY KEY,
        next_seq INTEGER NOT NULL
    );
"""
