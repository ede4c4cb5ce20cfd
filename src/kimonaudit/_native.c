/* Native helpers for the loops that run once per event or entry: the
 * verifier's row check (`scan`, `scan_copy`, `scan_pg`), the Merkle tree's
 * node hashing (`node_hashes`), and, each section below saying why, the
 * append path (validation, preparing, planning, the group commits of both
 * stores) and the search projection. All optional: pyproject.toml builds
 * this module when it can, and the pure-Python code does the same work
 * without it.
 *
 * scan: `verifier.scan` checks every stored row on its own: the payload
 * against its commitment and the leaf rebuilt from the row's columns against
 * the stored leaf hash. In Python the sqlite3 module's per-row fetch alone
 * takes most of the CPU budget of a 300,000 entries/s verify, so this reads
 * the rows through SQLite's C API on its own read-only connection, without
 * the GIL, and rebuilds each leaf in a buffer.
 *
 * It is a filter, not a second verifier: a row is reported clean only when
 * every column has the storage class the writer gives it, the payload matches
 * its commitment (or both are gone: a redaction) and SHA-256 of the rebuilt
 * leaf equals the stored leaf hash. Every other row is listed as odd, and the
 * Python code checks it again with the rules and messages it always had. The
 * leaf text must equal core.leaf's byte for byte (tests/test_native.py pins
 * it); then a clean verdict here is exactly the Python one.
 *
 * The leaf is RFC 8785 text with a fixed key order (see core/leaf.py); string
 * escaping is that of Python's json.encoder.encode_basestring, which RFC 8785
 * agrees with for the strings a ledger holds.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#ifdef HAVE_LIBPQ
#include <libpq-fe.h>
#endif
#include <stdint.h>
#include <string.h>

#define HASH 32
#define SEQ_BITS 40
#define PAGE 10000 /* rows per read transaction, so a scan never pins the WAL for long */

/* Years 0001-9999, as core.timefmt MIN_US and MAX_US. */
#define MIN_US (-62135596800LL * 1000000LL)
#define MAX_US (253402300800LL * 1000000LL - 1)

/* SHA-256 fetched once: EVP_sha256() would make every digest look the
 * implementation up again (a lock and a hash-table probe per row). */
static EVP_MD *SHA256_MD;

static const char *const SEVERITY[] = {"info", "low", "medium", "high", "critical"};
#define N_SEVERITY 5

typedef struct {
    unsigned char *p;
    size_t len, cap;
} buf_t;

static int buf_reserve(buf_t *b, size_t extra) {
    if (b->len + extra <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + extra) cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int buf_put(buf_t *b, const void *s, size_t n) {
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

#define PUTS(b, lit) buf_put((b), (lit), sizeof(lit) - 1)

static const char HEX[] = "0123456789abcdef";

/* The cycle collector only ever frees objects in reference cycles, and an
 * object that holds nothing the collector tracks cannot be in one. CPython
 * untracks such tuples and dicts itself, but only when a collection passes
 * over them, and the collections are what this avoids: the append path made
 * about ten tracked objects per event (Event, Target, Change and their
 * dicts, the context views, Prepared, EntryRow, Receipt), so a young
 * collection ran every 72 events and a full one every 9,000, 2-3 us of an
 * append's CPU per event (issue 7). What is built here from str, int,
 * bytes, None and objects untracked the same way is untracked as it is
 * made; anything holding a tracked value (a list in a payload, an object
 * the Python code made) stays tracked. Returns `t`. */
static PyObject *untrack_tuple(PyObject *t) {
    if (!t || !PyObject_GC_IsTracked(t)) return t;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(t); i++)
        if (PyObject_GC_IsTracked(PyTuple_GET_ITEM(t, i))) return t;
    PyObject_GC_UnTrack(t);
    return t;
}

/* A JSON string as encode_basestring writes it: quotes, the six short
 * escapes, \u00xx (lower-case hex) for other control bytes, every other byte
 * as it is (UTF-8 passes through). */
static int put_json(buf_t *b, const unsigned char *s, int n) {
    if (buf_reserve(b, (size_t)n * 6 + 2)) return -1;
    unsigned char *o = b->p + b->len;
    *o++ = '"';
    for (int i = 0; i < n; i++) {
        unsigned char c = s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = HEX[c >> 4];
                *o++ = HEX[c & 15];
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->p);
    return 0;
}

/* One stored column, whatever the database gave: SQLite's storage classes,
 * or a PostgreSQL binary COPY field of the scan query's type. */
enum { V_NULL, V_INT, V_TEXT, V_BLOB, V_OTHER };
typedef struct {
    int kind;
    int64_t i;
    const unsigned char *p;
    int n;
} val_t;

/* The columns the row check reads, in the order both scan queries select
 * them (after SQLite's rid, PostgreSQL's seq). */
enum { C_EID, C_AT, C_ACTION, C_CATEGORY, C_SEVERITY, C_SECURITY, C_ACTOR_HASH, C_ACTOR_TYPE,
       C_TARGET_TYPE, C_TARGET_ID, C_OUTCOME, C_PAYLOAD, C_SALT, C_COMMIT, C_LEAF, N_COLS };

typedef struct {
    int64_t seq;
    val_t c[N_COLS];
} row_t;

/* A text column as a JSON string, NULL as null (when `nullable`). Anything
 * else is not what the writer stores: -2 marks the row odd. */
static int put_text(buf_t *b, const val_t *v, int nullable) {
    if (v->kind == V_NULL && nullable) return PUTS(b, "null");
    if (v->kind != V_TEXT) return -2;
    return put_json(b, v->p, v->n);
}

/* Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
 * civil_from_days algorithm, public domain). */
static void civil(int64_t z, int64_t *y, unsigned *m, unsigned *d) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static char *put2(char *o, unsigned v) {
    *o++ = (char)('0' + v / 10);
    *o++ = (char)('0' + v % 10);
    return o;
}

/* core.timefmt.format_ts: YYYY-MM-DDTHH:MM:SS.ffffffZ (27 bytes) for a
 * value already checked to lie in [MIN_US, MAX_US]. */
static void format_ts(char *o, int64_t us) {
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) frac += 1000000, secs -= 1;
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) rem += 86400, days -= 1;
    int64_t y;
    unsigned m, d;
    civil(days, &y, &m, &d);
    o = put2(o, (unsigned)(y / 100));
    o = put2(o, (unsigned)(y % 100));
    *o++ = '-';
    o = put2(o, m);
    *o++ = '-';
    o = put2(o, d);
    *o++ = 'T';
    o = put2(o, (unsigned)(rem / 3600));
    *o++ = ':';
    o = put2(o, (unsigned)(rem / 60 % 60));
    *o++ = ':';
    o = put2(o, (unsigned)(rem % 60));
    *o++ = '.';
    for (int i = 5; i >= 0; i--, frac /= 10) o[i] = (char)('0' + frac % 10);
    o[6] = 'Z';
}

#define TS_LEN 27

/* A non-negative integer in decimal. */
static int put_uint(buf_t *b, uint64_t v) {
    char tmp[24];
    int n = 0;
    do tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
    while (v /= 10);
    return buf_put(b, tmp + sizeof tmp - n, (size_t)n);
}

typedef struct {
    buf_t seqs, hashes, odd, leaf;
    long long present, redacted;
    EVP_MD_CTX *ctx;
    const char *tenant_json;
    Py_ssize_t tenant_len;
    int64_t ts_us; /* rows of one batch share recorded_at: its text is kept */
    char ts[TS_LEN];
} scan_t;

/* SHA-256 of a, b and c concatenated (any may be empty). */
static int digest3(EVP_MD_CTX *ctx, const void *a, size_t na, const void *b, size_t nb,
                   const void *c, size_t nc, unsigned char *out) {
    if (!EVP_DigestInit_ex2(ctx, SHA256_MD, NULL)) return -1;
    if (na && !EVP_DigestUpdate(ctx, a, na)) return -1;
    if (nb && !EVP_DigestUpdate(ctx, b, nb)) return -1;
    if (nc && !EVP_DigestUpdate(ctx, c, nc)) return -1;
    return EVP_DigestFinal_ex(ctx, out, NULL) ? 0 : -1;
}

static int sha256(scan_t *s, const void *a, size_t na, const void *b2, size_t nb,
                  const void *c, size_t nc, unsigned char *out) {
    return digest3(s->ctx, a, na, b2, nb, c, nc, out);
}

static const char SQL[] =
    "SELECT rid, event_id, recorded_at, action, category, severity, security, actor_hash, "
    "actor_type, target_type, target_id, outcome, payload, salt, payload_commitment, leaf_hash "
    "FROM ledger WHERE rid >= ?1 AND rid < ?2 ORDER BY rid LIMIT ?3";

/* The leaf's text fields in key order: the text before each value, its
 * column, and whether it may be null. */
typedef struct {
    const char *before;
    int col, nullable;
} text_field_t;

static const text_field_t HEAD[] = {
    {"{\"_v\":1,\"action\":", C_ACTION, 0},
    {",\"actor_hash\":", C_ACTOR_HASH, 1},
    {",\"actor_type\":", C_ACTOR_TYPE, 1},
    {",\"category\":", C_CATEGORY, 0},
    {",\"id\":", C_EID, 1},
    {",\"outcome\":", C_OUTCOME, 0},
};
static const text_field_t TAIL[] = {
    {",\"target_id\":", C_TARGET_ID, 1},
    {",\"target_type\":", C_TARGET_TYPE, 1},
};

static int put_fields(buf_t *b, const val_t *c, const text_field_t *f, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int rc;
        if (buf_put(b, f[i].before, strlen(f[i].before))) return -1;
        if ((rc = put_text(b, &c[f[i].col], f[i].nullable))) return rc;
    }
    return 0;
}

/* The leaf text of row `r` into s->leaf (with the 0x00 prefix).
 * 0: built; -2: a column is not what the writer stores; -1: out of memory. */
static int build_leaf(scan_t *s, const row_t *r) {
    buf_t *b = &s->leaf;
    const val_t *c = r->c;
    int rc;
    b->len = 0;
    if (c[C_AT].kind != V_INT || c[C_SEVERITY].kind != V_INT || c[C_SECURITY].kind != V_INT ||
        c[C_COMMIT].kind != V_BLOB || r->seq < 0)
        return -2;
    int64_t at = c[C_AT].i, sev = c[C_SEVERITY].i;
    if (at < MIN_US || at > MAX_US || sev < 0 || sev >= N_SEVERITY) return -2;
    if (PUTS(b, "\x00")) return -1; /* RFC 6962's leaf prefix */
    if ((rc = put_fields(b, c, HEAD, sizeof HEAD / sizeof HEAD[0]))) return rc;
    if (PUTS(b, ",\"payload_commitment\":\"")) return -1;
    const unsigned char *cm = c[C_COMMIT].p;
    int ncm = c[C_COMMIT].n;
    if (buf_reserve(b, (size_t)ncm * 2)) return -1;
    for (int i = 0; i < ncm; i++) {
        b->p[b->len++] = HEX[cm[i] >> 4];
        b->p[b->len++] = HEX[cm[i] & 15];
    }
    if (PUTS(b, "\",\"recorded_at\":\"")) return -1;
    if (at != s->ts_us || !s->ts[0]) {
        format_ts(s->ts, at);
        s->ts_us = at;
    }
    if (buf_put(b, s->ts, TS_LEN)) return -1;
    if (c[C_SECURITY].i != 0 ? PUTS(b, "\",\"security\":true,\"seq\":")
                             : PUTS(b, "\",\"security\":false,\"seq\":"))
        return -1;
    if (put_uint(b, (uint64_t)r->seq)) return -1;
    if (PUTS(b, ",\"severity\":\"")) return -1;
    if (buf_put(b, SEVERITY[sev], strlen(SEVERITY[sev]))) return -1;
    if (PUTS(b, "\"")) return -1;
    if ((rc = put_fields(b, c, TAIL, sizeof TAIL / sizeof TAIL[0]))) return rc;
    if (PUTS(b, ",\"tenant\":")) return -1;
    if (buf_put(b, s->tenant_json, (size_t)s->tenant_len)) return -1;
    return PUTS(b, "}");
}

/* One row: 1 clean, 0 odd, -1 out of memory or a hashing failure. The
 * caller has checked that its stored leaf hash is a 32-byte blob. */
static int check_row(scan_t *s, const row_t *r) {
    const val_t *c = r->c;
    int redacted = c[C_PAYLOAD].kind == V_NULL && c[C_SALT].kind == V_NULL;
    if (!redacted) {
        if (c[C_PAYLOAD].kind != V_BLOB || c[C_SALT].kind != V_BLOB ||
            c[C_COMMIT].kind != V_BLOB || c[C_COMMIT].n != HASH)
            return 0;
        unsigned char got[HASH];
        if (sha256(s, "\x02", 1, c[C_SALT].p, (size_t)c[C_SALT].n, c[C_PAYLOAD].p,
                   (size_t)c[C_PAYLOAD].n, got))
            return -1;
        if (memcmp(got, c[C_COMMIT].p, HASH) != 0) return 0;
    }
    int rc = build_leaf(s, r);
    if (rc == -2) return 0;
    if (rc) return -1;
    unsigned char lh[HASH];
    if (sha256(s, s->leaf.p, s->leaf.len, NULL, 0, NULL, 0, lh)) return -1;
    if (memcmp(lh, c[C_LEAF].p, HASH) != 0) return 0;
    if (redacted)
        s->redacted++;
    else
        s->present++;
    return 1;
}

/* Record row `r` (its seq and stored leaf hash) and check it. 0 done, 1 its
 * leaf hash is not a 32-byte blob (the Python scan must take the range), -1
 * out of memory or a hashing failure. */
static int take_row(scan_t *s, const row_t *r) {
    if (r->c[C_LEAF].kind != V_BLOB || r->c[C_LEAF].n != HASH) return 1;
    int64_t index = (int64_t)(s->seqs.len / sizeof(int64_t));
    if (buf_put(&s->seqs, &r->seq, sizeof r->seq) || buf_put(&s->hashes, r->c[C_LEAF].p, HASH))
        return -1;
    int ok = check_row(s, r);
    if (ok < 0) return -1;
    if (!ok && buf_put(&s->odd, &index, sizeof index)) return -1;
    return 0;
}

/* The current SQLite result row (rid first, then the columns). */
static void from_stmt(sqlite3_stmt *st, row_t *r) {
    r->seq = sqlite3_column_int64(st, 0) & ((1LL << SEQ_BITS) - 1);
    for (int k = 0; k < N_COLS; k++) {
        int col = k + 1;
        val_t *v = &r->c[k];
        v->p = NULL;
        v->n = 0;
        switch (sqlite3_column_type(st, col)) {
            case SQLITE_INTEGER:
                v->kind = V_INT;
                v->i = sqlite3_column_int64(st, col);
                break;
            case SQLITE_TEXT:
                v->p = sqlite3_column_text(st, col);
                v->n = sqlite3_column_bytes(st, col);
                v->kind = v->p ? V_TEXT : V_OTHER; /* NULL here: out of memory */
                break;
            case SQLITE_BLOB:
                v->p = sqlite3_column_blob(st, col);
                v->n = sqlite3_column_bytes(st, col);
                v->kind = V_BLOB;
                break;
            case SQLITE_NULL:
                v->kind = V_NULL;
                break;
            default:
                v->kind = V_OTHER;
        }
    }
}

/* Scan rid [lo, hi). 0 done; 1 a stored leaf hash is not a 32-byte blob
 * (the caller's Python scan takes the range); -1 out of memory or a hashing
 * failure; otherwise an SQLite error code. */
static int run_scan(scan_t *s, const char *path, int64_t lo, int64_t hi) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(db, 10000);
    if (rc == SQLITE_OK) rc = sqlite3_prepare_v2(db, SQL, -1, &st, NULL);
    while (rc == SQLITE_OK && lo < hi) {
        sqlite3_bind_int64(st, 1, lo);
        sqlite3_bind_int64(st, 2, hi);
        sqlite3_bind_int(st, 3, PAGE);
        int rows = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            rows++;
            row_t r;
            from_stmt(st, &r);
            lo = sqlite3_column_int64(st, 0) + 1;
            int taken = take_row(s, &r);
            if (taken) {
                rc = taken;
                break;
            }
        }
        if (rc == SQLITE_DONE) rc = rows < PAGE ? SQLITE_DONE : SQLITE_OK;
        if (rc != SQLITE_OK) break;
        sqlite3_reset(st); /* ends this page's read transaction */
    }
    if (rc == SQLITE_DONE) rc = 0;
    if (rc > 1 && db) rc = sqlite3_extended_errcode(db) ? sqlite3_extended_errcode(db) : rc;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* The odd rows' indexes as a Python list. */
static PyObject *odd_list(const scan_t *s) {
    size_t n = s->odd.len / sizeof(int64_t);
    PyObject *odd = PyList_New((Py_ssize_t)n);
    const int64_t *ix = (const int64_t *)s->odd.p;
    for (size_t i = 0; odd && i < n; i++) {
        PyObject *v = PyLong_FromLongLong(ix[i]);
        if (!v) {
            Py_CLEAR(odd);
            break;
        }
        PyList_SET_ITEM(odd, (Py_ssize_t)i, v);
    }
    return odd;
}

PyDoc_STRVAR(scan_doc,
"scan(path, lo, hi, tenant_json) -> (seqs, hashes, odd, present, redacted) or None\n\n"
"Check the ledger rows of rid [lo, hi) in the SQLite file `path`. `seqs` packs\n"
"each row's seq as native int64 (array('q')), `hashes` its stored leaf hash\n"
"(32 bytes each), `odd` the indexes of rows to check again in Python.\n"
"`present` and `redacted` count the clean rows with and without a payload.\n"
"None: a stored leaf hash is not 32 bytes; scan the range in Python.");

/* A scan's state for tenant `tenant` (its JSON text); -1 out of memory. */
static int scan_open(scan_t *s, const char *tenant, Py_ssize_t tenant_len) {
    memset(s, 0, sizeof *s);
    s->tenant_json = tenant;
    s->tenant_len = tenant_len;
    s->ctx = EVP_MD_CTX_new();
    if (!s->ctx) PyErr_NoMemory();
    return s->ctx ? 0 : -1;
}

static void scan_free(scan_t *s) {
    EVP_MD_CTX_free(s->ctx);
    s->ctx = NULL;
    free(s->seqs.p);
    free(s->hashes.p);
    free(s->odd.p);
    free(s->leaf.p);
}

/* (seqs, hashes, odd, present, redacted) of a finished scan. */
static PyObject *scan_rows(const scan_t *s) {
    PyObject *odd = odd_list(s);
    if (!odd) return NULL;
    return Py_BuildValue("(y#y#NLL)", s->seqs.p ? (char *)s->seqs.p : "", (Py_ssize_t)s->seqs.len,
                         s->hashes.p ? (char *)s->hashes.p : "", (Py_ssize_t)s->hashes.len, odd,
                         s->present, s->redacted);
}

/* The three scans' common ends: the rows (rc 0), None (1: a stored leaf
 * hash not 32 bytes) or the error of -1 (memory, SHA-256) and -3 (not the
 * scan query's COPY); a caller reports its own other codes first. Frees the
 * scan. */
static PyObject *scan_finish(scan_t *s, int rc, const char *who) {
    PyObject *out = NULL;
    if (rc == 0)
        out = scan_rows(s);
    else if (rc == 1)
        out = Py_NewRef(Py_None);
    else if (rc == -3)
        PyErr_Format(PyExc_ValueError, "%s: not the binary COPY of the scan query", who);
    else if (!PyErr_Occurred())
        PyErr_Format(PyExc_MemoryError, "%s: out of memory or SHA-256 failed", who);
    scan_free(s);
    return out;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    const char *path, *tenant;
    long long lo, hi;
    Py_ssize_t tenant_len;
    if (!PyArg_ParseTuple(args, "sLLy#", &path, &lo, &hi, &tenant, &tenant_len)) return NULL;
    scan_t s;
    if (scan_open(&s, tenant, tenant_len)) return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_scan(&s, path, lo, hi);
    Py_END_ALLOW_THREADS
    if (rc > 1)
        PyErr_Format(PyExc_OSError, "ledger scan of %s: %s (SQLite error %d)", path,
                     sqlite3_errstr(rc), rc);
    return scan_finish(&s, rc, "ledger scan");
}

/* --- PostgreSQL: the binary COPY of the scan query ---------------------------
 * COPY (SELECT seq, event_id, ..., leaf_hash ...) TO STDOUT (FORMAT BINARY):
 * an optional 19-byte header, then per row an int16 field count (16) and per
 * field an int32 length (-1: NULL) and that many bytes, integers big-endian;
 * an int16 -1 ends the data. Text arrives in the client encoding (UTF-8). */

/* The signature (11 bytes), then flags and header-extension length (zero):
 * what the writers below send and what the reader checks the start of. */
static const unsigned char COPY_HEADER[19] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0";
#define COPY_FIELDS 16

static int64_t be(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~0ULL << (8 * n); /* sign-extend */
    return (int64_t)v;
}

/* Width of each integer field of the scan query (0: text or bytea). */
static const int COPY_INT_WIDTH[COPY_FIELDS] = {8, 0, 8, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0};

/* Check the complete rows in p[0..n). *used: bytes consumed (a row cut off
 * at the end is left for the next call); *ended: the trailer was read.
 * 0 fine, 1 a leaf hash not 32 bytes, -1 out of memory or hashing, -3 not
 * the binary COPY of the scan query. */
static int run_copy(scan_t *s, const unsigned char *p, size_t n, size_t *used, int *ended) {
    size_t off = 0;
    *ended = 0;
    if (n > 0 && p[0] == 'P') { /* a tuple starts with 0x00 0x10: this is the header */
        if (memcmp(p, COPY_HEADER, n < 11 ? n : 11) != 0) return -3;
        if (n < 19) goto out; /* cut short: wait for the rest */
        size_t end = 19 + (size_t)(uint32_t)be(p + 15, 4); /* header extension, unused */
        if (end > n) goto out;
        off = end;
    }
    while (n - off >= 2) {
        int64_t fields = be(p + off, 2);
        if (fields == -1) {
            off += 2;
            *ended = 1;
            break;
        }
        if (fields != COPY_FIELDS) return -3;
        size_t q = off + 2;
        row_t r;
        int whole = 1;
        for (int f = 0; f < COPY_FIELDS; f++) {
            if (n - q < 4) {
                whole = 0;
                break;
            }
            int64_t len = be(p + q, 4);
            q += 4;
            val_t v = {V_NULL, 0, NULL, 0};
            if (len >= 0) {
                if ((int64_t)(n - q) < len) {
                    whole = 0;
                    break;
                }
                int w = COPY_INT_WIDTH[f];
                if (w) {
                    if (len != w) return -3;
                    v.kind = V_INT;
                    v.i = be(p + q, w);
                } else {
                    v.kind = f >= 1 + C_PAYLOAD ? V_BLOB : V_TEXT;
                    v.p = p + q;
                    v.n = (int)len;
                }
                q += (size_t)len;
            } else if (len != -1) {
                return -3;
            }
            if (f == 0) {
                if (v.kind != V_INT) return -3; /* seq is NOT NULL */
                r.seq = v.i;
            } else {
                r.c[f - 1] = v;
            }
        }
        if (!whole) break;
        int taken = take_row(s, &r);
        if (taken) return taken;
        off = q;
    }
out:
    *used = off;
    return 0;
}

PyDoc_STRVAR(scan_copy_doc,
"scan_copy(data, tenant_json) -> (seqs, hashes, odd, present, redacted, used, ended) or None\n\n"
"`scan` for PostgreSQL: check the rows in `data`, a piece of the binary COPY\n"
"of the verifier's scan query (the header, if present, is skipped). `used`\n"
"counts the bytes consumed (a row cut off at the end is not), `ended` is true\n"
"once the trailer was read. None: a stored leaf hash is not 32 bytes.\n"
"ValueError: the data is not that COPY.");

static PyObject *scan_copy(PyObject *self, PyObject *args) {
    Py_buffer data;
    const char *tenant;
    Py_ssize_t tenant_len;
    if (!PyArg_ParseTuple(args, "y*y#", &data, &tenant, &tenant_len)) return NULL;
    scan_t s;
    if (scan_open(&s, tenant, tenant_len)) {
        PyBuffer_Release(&data);
        return NULL;
    }
    size_t used = 0;
    int ended = 0, rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_copy(&s, data.buf, (size_t)data.len, &used, &ended);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyObject *out = scan_finish(&s, rc, "scan_copy");
    if (out && rc == 0) { /* scan's five, then used and ended */
        PyObject *tail = Py_BuildValue("(nO)", (Py_ssize_t)used, ended ? Py_True : Py_False);
        PyObject *all = tail ? PySequence_Concat(out, tail) : NULL;
        Py_XDECREF(tail);
        Py_SETREF(out, all);
    }
    return out;
}

/* A step of SQLiteBatch.run or PGBatch.run: a (sql, params) tuple. Returns
 * the SQL's UTF-8 (its byte length in *len, where len is given) and sets
 * *params (borrowed); NULL with a TypeError for anything else. */
static const char *step_parts(PyObject *pair, Py_ssize_t *len, PyObject **params) {
    if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2 ||
        !PyUnicode_Check(PyTuple_GET_ITEM(pair, 0))) {
        PyErr_SetString(PyExc_TypeError, "run: each step is a (sql, params) tuple");
        return NULL;
    }
    *params = PyTuple_GET_ITEM(pair, 1);
    return PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(pair, 0), len);
}

#ifdef HAVE_LIBPQ
/* --- PostgreSQL: the same COPY, read from libpq here -------------------------
 * scan_copy leaves the socket to psycopg, and taking each row's message in
 * Python costs about two microseconds, as much as checking it. Here the
 * whole read runs in C without the GIL, on a connection of its own (the
 * libpq this module links, not psycopg's bundled one). */

#define PG_FEED (1 << 20) /* bytes of COPY data gathered per run_copy call */

/* 0 fine, 1 a leaf hash not 32 bytes, -1 out of memory or hashing, -3 not the
 * scan's COPY, -4 a connection or server error (its text in *err). */
static int run_pg(scan_t *s, const char *conninfo, const char *sql, char **err) {
    PGconn *conn = PQconnectdb(conninfo);
    PGresult *res = NULL;
    buf_t in = {NULL, 0, 0};
    int rc = 0, ended = 0;
    if (PQstatus(conn) != CONNECTION_OK) goto pg_error;
    res = PQexec(conn, sql);
    if (PQresultStatus(res) != PGRES_COPY_OUT) goto pg_error;
    PQclear(res);
    res = NULL;
    for (;;) {
        char *msg = NULL;
        int n = PQgetCopyData(conn, &msg, 0);
        if (n > 0) {
            int bad = buf_put(&in, msg, (size_t)n);
            PQfreemem(msg);
            if (bad) {
                rc = -1;
                break;
            }
        }
        if (n == -2) goto pg_error;
        if (in.len >= PG_FEED || (n == -1 && in.len)) {
            if (ended) { /* data after the trailer */
                rc = -3;
                break;
            }
            size_t used = 0;
            rc = run_copy(s, in.p, in.len, &used, &ended);
            if (rc) break;
            memmove(in.p, in.p + used, in.len - used);
            in.len -= used;
        }
        if (n == -1) {
            if (in.len || !ended) rc = -3; /* a row cut short, or no trailer */
            break;
        }
    }
    if (rc) { /* stop reading: closing the connection cancels the COPY */
        PQfinish(conn);
        free(in.p);
        return rc;
    }
    while ((res = PQgetResult(conn)) != NULL) {
        if (PQresultStatus(res) != PGRES_COMMAND_OK) goto pg_error;
        PQclear(res);
    }
    PQfinish(conn);
    free(in.p);
    return 0;
pg_error:
    /* A query that ran but is no COPY TO STDOUT leaves libpq no message. */
    *err = strdup(*PQerrorMessage(conn) ? PQerrorMessage(conn)
                                        : "the query did not start a COPY TO STDOUT");
    PQclear(res);
    PQfinish(conn);
    free(in.p);
    return -4;
}

PyDoc_STRVAR(scan_pg_doc,
"scan_pg(conninfo, sql, tenant_json) -> (seqs, hashes, odd, present, redacted) or None\n\n"
"`scan` for PostgreSQL: connect with libpq (`conninfo`), run `sql`, the\n"
"scan query's binary COPY TO STDOUT, and check its rows as scan_copy does.\n"
"None: a stored leaf hash is not 32 bytes. ConnectionError: libpq's message.\n"
"ValueError: the data is not that COPY.");

static PyObject *scan_pg(PyObject *self, PyObject *args) {
    const char *conninfo, *sql, *tenant;
    Py_ssize_t tenant_len;
    if (!PyArg_ParseTuple(args, "ssy#", &conninfo, &sql, &tenant, &tenant_len)) return NULL;
    scan_t s;
    if (scan_open(&s, tenant, tenant_len)) return NULL;
    char *err = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = run_pg(&s, conninfo, sql, &err);
    Py_END_ALLOW_THREADS
    if (rc == -4) PyErr_SetString(PyExc_ConnectionError, err ? err : "scan_pg: out of memory");
    free(err);
    return scan_finish(&s, rc, "scan_pg");
}

/* --- appends on PostgreSQL: a write connection that lets go of the GIL once -----
 * The same reason as SQLiteBatch below: psycopg lets go of the GIL for each
 * round trip of a group commit (BEGIN, the tenants' locks, each COPY, the
 * pipeline of nodes, state and COMMIT) and then waits for it behind threads
 * in long C calls; profiled, BEGIN alone took 6.4 ms of a 21 ms group with
 * two appending threads. PGBatch.run takes a step list and runs it with one
 * release: queries as one libpq pipeline (one round trip), COPY steps on
 * their own. A connection of its own, on the libpq this module links. */

typedef struct {
    PyObject_HEAD
    PGconn *conn;
} pgbatch_t;

static PyObject *PGBatchError; /* (message, sqlstate or None, step index, steps sent) */

/* Queries sent per pipeline before their results are read. The connection
 * blocks, so the server's answers must fit its socket buffers while the rest
 * is still being sent, or both sides would wait on each other: a group of
 * many tenants or new actors is a few round trips instead of one. */
#define PG_PIPELINE 256

typedef struct {
    const char *sql;
    int n_params;
    const char **values; /* into `owned` or the Python objects' own buffers */
    int *lengths;
    int *formats;
    Oid *types;          /* bytea for bytes (sent binary), else left to the server */
    char **owned;        /* text this call formatted (ints, arrays) */
    const char *copy;    /* COPY data, or NULL for a query */
    Py_ssize_t copy_len;
    PGresult *res;       /* a query's result, while rows are taken */
} pgstep_t;

static void pg_noop_notice(void *arg, const char *message) { (void)arg; (void)message; }

/* An element of a text-format array: quoted, `"` and `\` escaped. */
static int put_array_text(buf_t *b, const char *p, Py_ssize_t n) {
    if (buf_put(b, "\"", 1)) return -1;
    for (Py_ssize_t k = 0; k < n; k++) {
        if ((p[k] == '"' || p[k] == '\\') && buf_put(b, "\\", 1)) return -1;
        if (buf_put(b, &p[k], 1)) return -1;
    }
    return buf_put(b, "\"", 1);
}

/* A Python value as a parameter: None NULL, bool t/f, int decimal, str its
 * UTF-8, bytes binary (its own buffer), a list of ints or of str/None a
 * text-format array. 0, or -1 with a Python error set. */
static int pg_param(pgstep_t *s, int j, PyObject *v) {
    buf_t b = {NULL, 0, 0};
    s->formats[j] = 0;
    if (v == Py_None) {
        s->values[j] = NULL;
        return 0;
    }
    if (PyBool_Check(v)) {
        s->values[j] = v == Py_True ? "t" : "f";
        s->lengths[j] = 1;
        return 0;
    }
    if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        s->values[j] = PyUnicode_AsUTF8AndSize(v, &n);
        s->lengths[j] = (int)n;
        return s->values[j] ? 0 : -1;
    }
    if (PyBytes_Check(v)) {
        s->values[j] = PyBytes_AS_STRING(v);
        s->lengths[j] = (int)PyBytes_GET_SIZE(v);
        s->formats[j] = 1;
        s->types[j] = 17; /* BYTEAOID */
        return 0;
    }
    if (PyLong_Check(v)) {
        long long i = PyLong_AsLongLong(v);
        if (i == -1 && PyErr_Occurred()) return -1;
        char t[24];
        int n = snprintf(t, sizeof t, "%lld", i);
        if (buf_put(&b, t, (size_t)n)) goto nomem;
    } else if (PyList_Check(v)) {
        if (buf_put(&b, "{", 1)) goto nomem;
        for (Py_ssize_t k = 0; k < PyList_GET_SIZE(v); k++) {
            PyObject *e = PyList_GET_ITEM(v, k);
            if (k && buf_put(&b, ",", 1)) goto nomem;
            if (e == Py_None) {
                if (buf_put(&b, "NULL", 4)) goto nomem;
            } else if (PyLong_Check(e) && !PyBool_Check(e)) {
                long long i = PyLong_AsLongLong(e);
                if (i == -1 && PyErr_Occurred()) goto fail;
                char t[24];
                int n = snprintf(t, sizeof t, "%lld", i);
                if (buf_put(&b, t, (size_t)n)) goto nomem;
            } else if (PyUnicode_Check(e)) {
                Py_ssize_t n;
                const char *p = PyUnicode_AsUTF8AndSize(e, &n);
                if (!p) goto fail;
                if (put_array_text(&b, p, n)) goto nomem;
            } else {
                PyErr_Format(PyExc_TypeError, "run: an array holds a %s", Py_TYPE(e)->tp_name);
                goto fail;
            }
        }
        if (buf_put(&b, "}", 1)) goto nomem;
    } else {
        PyErr_Format(PyExc_TypeError, "run: cannot send a %s", Py_TYPE(v)->tp_name);
        return -1;
    }
    /* libpq reads a text parameter up to its NUL, whatever its length says. */
    if (buf_put(&b, "", 1) || b.len > INT_MAX) goto nomem;
    b.len--;
    s->owned[j] = (char *)b.p;
    s->values[j] = (const char *)b.p;
    s->lengths[j] = (int)b.len;
    return 0;
nomem:
    PyErr_NoMemory();
fail:
    free(b.p);
    return -1;
}

/* The first error of a run: its text, and its SQLSTATE where the server sent one. */
typedef struct {
    char *message;
    char sqlstate[6];
    Py_ssize_t step;
    Py_ssize_t sent; /* steps handed to the server so far (all before `sent`) */
} pgfail_t;

static void pg_fail(pgfail_t *f, PGconn *conn, const PGresult *res, Py_ssize_t step) {
    if (f->message) return;
    /* The primary message, as psycopg's errors give it (no "ERROR:  ", no
     * LINE and HINT lines); libpq's whole text for a connection's failure. */
    const char *m = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!m || !*m) m = res ? PQresultErrorMessage(res) : "";
    if (!*m) m = PQerrorMessage(conn);
    if (!*m) m = "unknown error";
    f->message = strdup(m);
    const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (code) snprintf(f->sqlstate, sizeof f->sqlstate, "%s", code);
    f->step = step;
}

/* One COPY FROM STDIN with all its data. 0, or -1 with `f` filled. */
static int pg_copy(PGconn *conn, pgstep_t *s, Py_ssize_t k, pgfail_t *f) {
    PGresult *res = PQexec(conn, s->sql);
    if (PQresultStatus(res) != PGRES_COPY_IN) {
        pg_fail(f, conn, res, k);
        PQclear(res);
        while ((res = PQgetResult(conn)) != NULL) PQclear(res);
        return -1;
    }
    PQclear(res);
    const char *p = s->copy;
    Py_ssize_t left = s->copy_len;
    int ok = 1;
    while (ok && left > 0) {
        int n = left > (1 << 20) ? (1 << 20) : (int)left;
        ok = PQputCopyData(conn, p, n) == 1;
        p += n;
        left -= n;
    }
    if (PQputCopyEnd(conn, ok ? NULL : "the client could not send the data") != 1) ok = 0;
    int failed = !ok;
    if (!ok) pg_fail(f, conn, NULL, k);
    while ((res = PQgetResult(conn)) != NULL) {
        if (!failed && PQresultStatus(res) != PGRES_COMMAND_OK) {
            pg_fail(f, conn, res, k);
            failed = 1;
        }
        PQclear(res);
    }
    return failed ? -1 : 0;
}

/* Queries first..last-1 as one pipeline: one round trip. Each step keeps
 * its result. 0, or -1 with `f` filled (the pipeline is drained). */
static int pg_pipeline(PGconn *conn, pgstep_t *st, Py_ssize_t first, Py_ssize_t last, pgfail_t *f) {
    if (PQenterPipelineMode(conn) != 1) {
        pg_fail(f, conn, NULL, first);
        return -1;
    }
    Py_ssize_t sent = first;
    for (; sent < last; sent++) {
        pgstep_t *s = &st[sent];
        if (PQsendQueryParams(conn, s->sql, s->n_params, s->types, s->values, s->lengths, s->formats,
                              0) != 1)
            break;
    }
    f->sent = sent;
    int broken = sent < last;
    if (broken) pg_fail(f, conn, NULL, sent);
    if (PQpipelineSync(conn) != 1) {
        pg_fail(f, conn, NULL, sent);
        /* The connection is gone: nothing more will come. */
        PQexitPipelineMode(conn);
        return -1;
    }
    for (Py_ssize_t k = first; k < sent; k++) {
        PGresult *res;
        while ((res = PQgetResult(conn)) != NULL) {
            ExecStatusType t = PQresultStatus(res);
            if (t == PGRES_TUPLES_OK || t == PGRES_COMMAND_OK) {
                PQclear(st[k].res);
                st[k].res = res;
            } else {
                if (t != PGRES_PIPELINE_ABORTED) pg_fail(f, conn, res, k);
                PQclear(res);
            }
        }
    }
    for (int idle = 0;;) { /* up to the sync's own result */
        PGresult *res = PQgetResult(conn);
        if (!res) {
            if (PQstatus(conn) == CONNECTION_BAD || ++idle > 2) {
                pg_fail(f, conn, NULL, last - 1);
                break;
            }
            continue;
        }
        ExecStatusType t = PQresultStatus(res);
        PQclear(res);
        if (t == PGRES_PIPELINE_SYNC) break;
    }
    PQexitPipelineMode(conn);
    return f->message ? -1 : 0;
}

/* A query's rows as a list of tuples of str (text format) or None. */
static PyObject *pg_rows(const PGresult *res) {
    int n = PQntuples(res), m = PQnfields(res);
    PyObject *rows = PyList_New(n);
    for (int r = 0; rows && r < n; r++) {
        PyObject *row = PyTuple_New(m);
        if (!row) {
            Py_CLEAR(rows);
            break;
        }
        for (int c = 0; c < m; c++) {
            PyObject *v = PQgetisnull(res, r, c)
                              ? Py_NewRef(Py_None)
                              : PyUnicode_DecodeUTF8(PQgetvalue(res, r, c), PQgetlength(res, r, c),
                                                     NULL);
            if (!v) {
                Py_DECREF(row);
                Py_CLEAR(rows);
                break;
            }
            PyTuple_SET_ITEM(row, c, v);
        }
        if (rows) PyList_SET_ITEM(rows, r, row);
    }
    return rows;
}

PyDoc_STRVAR(pgbatch_run_doc,
"run(steps) -> list\n\n"
"Run `steps` in order without the GIL. A step is (sql, params): params a\n"
"tuple or list of values ($1, $2, ...; None, bool, int, str, bytes sent\n"
"binary, or a list of ints or str/None sent as a text array), or bytes: the\n"
"data of a COPY ... FROM STDIN. Consecutive queries go as one pipeline (256\n"
"at most each).\n"
"Returns per step its rows (tuples of str or None, text format) or None for\n"
"a step that returns none. The first failing step stops the rest and raises\n"
"PGBatchError(message, sqlstate or None, index of the step, steps sent): the\n"
"server may have run a step only if its index is below `steps sent` (so a\n"
"COMMIT there has an unknown outcome when the connection was lost). Queries\n"
"after a COPY are sent only once it is done, and a COPY only once the queries\n"
"before it answered. The transaction is left as it is.");

static PyObject *pgbatch_run(pgbatch_t *self, PyObject *steps_obj) {
    if (!self->conn) {
        PyErr_SetObject(PGBatchError, Py_BuildValue("(sO)", "the connection is closed", Py_None));
        return NULL;
    }
    PyObject *steps = PySequence_Fast(steps_obj, "run: steps must be a list");
    if (!steps) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(steps);
    pgstep_t *st = calloc((size_t)n + 1, sizeof *st);
    PyObject **keep = calloc((size_t)n + 1, sizeof *keep);
    PyObject *out = NULL;
    pgfail_t f = {NULL, "", -1, 0};
    if (!st || !keep) {
        PyErr_NoMemory();
        goto end;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *params;
        st[k].sql = step_parts(PySequence_Fast_GET_ITEM(steps, k), NULL, &params);
        if (!st[k].sql) goto end;
        if (PyBytes_Check(params)) {
            keep[k] = Py_NewRef(params);
            st[k].copy = PyBytes_AS_STRING(params);
            st[k].copy_len = PyBytes_GET_SIZE(params);
            continue;
        }
        keep[k] = PySequence_Fast(params, "run: params must be a sequence or COPY bytes");
        if (!keep[k]) goto end;
        Py_ssize_t m = PySequence_Fast_GET_SIZE(keep[k]);
        st[k].n_params = (int)m;
        st[k].values = calloc((size_t)m + 1, sizeof *st[k].values);
        st[k].lengths = calloc((size_t)m + 1, sizeof *st[k].lengths);
        st[k].formats = calloc((size_t)m + 1, sizeof *st[k].formats);
        st[k].types = calloc((size_t)m + 1, sizeof *st[k].types);
        st[k].owned = calloc((size_t)m + 1, sizeof *st[k].owned);
        if (!st[k].values || !st[k].lengths || !st[k].formats || !st[k].types || !st[k].owned) {
            PyErr_NoMemory();
            goto end;
        }
        for (Py_ssize_t j = 0; j < m; j++)
            if (pg_param(&st[k], (int)j, PySequence_Fast_GET_ITEM(keep[k], j))) goto end;
    }
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t k = 0;
    while (k < n && !f.message) {
        if (st[k].copy) {
            f.sent = k + 1;
            pg_copy(self->conn, &st[k], k, &f);
            k++;
            continue;
        }
        Py_ssize_t last = k;
        while (last < n && !st[last].copy && last - k < PG_PIPELINE) last++;
        pg_pipeline(self->conn, st, k, last, &f);
        k = last;
    }
    Py_END_ALLOW_THREADS
    if (f.message) {
        char text[1024];
        size_t len = strlen(f.message);
        while (len && (f.message[len - 1] == '\n' || f.message[len - 1] == ' ')) len--;
        snprintf(text, sizeof text, "%.*s (statement %zd of %zd)", (int)len, f.message,
                 f.step + 1, n);
        PyObject *exc = Py_BuildValue("(ssnn)", text, f.sqlstate, f.step, f.sent);
        if (exc && !*f.sqlstate) {
            Py_INCREF(Py_None);
            PyTuple_SetItem(exc, 1, Py_None);
        }
        if (exc) PyErr_SetObject(PGBatchError, exc);
        Py_XDECREF(exc);
        goto end;
    }
    out = PyList_New(n);
    for (Py_ssize_t j = 0; out && j < n; j++) {
        PyObject *rows = st[j].res && PQresultStatus(st[j].res) == PGRES_TUPLES_OK
                             ? pg_rows(st[j].res)
                             : Py_NewRef(Py_None);
        if (!rows) Py_CLEAR(out);
        else PyList_SET_ITEM(out, j, rows);
    }
end:
    for (Py_ssize_t j = 0; st && j < n; j++) {
        for (int i = 0; st[j].owned && i < st[j].n_params; i++) free(st[j].owned[i]);
        free(st[j].owned);
        free(st[j].values);
        free(st[j].lengths);
        free(st[j].formats);
        free(st[j].types);
        PQclear(st[j].res);
        Py_XDECREF(keep[j]);
    }
    free(st);
    free(keep);
    free(f.message);
    Py_DECREF(steps);
    return out;
}

static void pgbatch_close_conn(pgbatch_t *self) {
    if (self->conn) PQfinish(self->conn);
    self->conn = NULL;
}

static PyObject *pgbatch_close(pgbatch_t *self, PyObject *unused) {
    pgbatch_close_conn(self);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(pgbatch_reset_doc,
"reset() -> None\n\n"
"Connect again (after the server dropped the connection); ConnectionError\n"
"with libpq's message when that fails.");

static PyObject *pgbatch_reset(pgbatch_t *self, PyObject *unused) {
    if (!self->conn) {
        PyErr_SetString(PyExc_ConnectionError, "the connection is closed");
        return NULL;
    }
    int ok;
    Py_BEGIN_ALLOW_THREADS
    PQreset(self->conn);
    ok = PQstatus(self->conn) == CONNECTION_OK;
    Py_END_ALLOW_THREADS
    if (!ok) {
        PyErr_SetString(PyExc_ConnectionError, PQerrorMessage(self->conn));
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *pgbatch_in_transaction(pgbatch_t *self, void *closure) {
    return PyBool_FromLong(self->conn && PQtransactionStatus(self->conn) != PQTRANS_IDLE &&
                           PQtransactionStatus(self->conn) != PQTRANS_UNKNOWN);
}

static PyObject *pgbatch_pid(pgbatch_t *self, void *closure) {
    return PyLong_FromLong(self->conn ? PQbackendPID(self->conn) : 0);
}

static PyObject *pgbatch_broken(pgbatch_t *self, void *closure) {
    return PyBool_FromLong(!self->conn || PQstatus(self->conn) != CONNECTION_OK);
}

static int pgbatch_init(pgbatch_t *self, PyObject *args, PyObject *kwds) {
    const char *conninfo;
    static char *kw[] = {"conninfo", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s", kw, &conninfo)) return -1;
    pgbatch_close_conn(self);
    PGconn *conn;
    Py_BEGIN_ALLOW_THREADS
    conn = PQconnectdb(conninfo);
    Py_END_ALLOW_THREADS
    if (PQstatus(conn) != CONNECTION_OK) {
        PyErr_SetString(PyExc_ConnectionError, conn ? PQerrorMessage(conn) : "out of memory");
        PQfinish(conn);
        return -1;
    }
    /* Notices (none of the writer's statements should raise any) would go to stderr. */
    PQsetNoticeProcessor(conn, pg_noop_notice, NULL);
    self->conn = conn;
    return 0;
}

static void pgbatch_dealloc(pgbatch_t *self) {
    pgbatch_close_conn(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef pgbatch_methods[] = {
    {"run", (PyCFunction)pgbatch_run, METH_O, pgbatch_run_doc},
    {"reset", (PyCFunction)pgbatch_reset, METH_NOARGS, pgbatch_reset_doc},
    {"close", (PyCFunction)pgbatch_close, METH_NOARGS, "Close the connection."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef pgbatch_getset[] = {
    {"in_transaction", (getter)pgbatch_in_transaction, NULL, "Whether a transaction is open.", NULL},
    {"broken", (getter)pgbatch_broken, NULL, "Whether the connection is lost or closed.", NULL},
    {"pid", (getter)pgbatch_pid, NULL, "The server process of the connection (0: none).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject PGBatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kimonaudit._native.PGBatch",
    .tp_basicsize = sizeof(pgbatch_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "PGBatch(conninfo): a libpq connection whose run() executes many statements\n"
              "per call without the GIL.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)pgbatch_init,
    .tp_dealloc = (destructor)pgbatch_dealloc,
    .tp_methods = pgbatch_methods,
    .tp_getset = pgbatch_getset,
};
#endif

PyDoc_STRVAR(leaf_doc,
"leaf(rid, event_id, recorded_at, action, category, severity, security, actor_hash,\n"
"     actor_type, target_type, target_id, outcome, commitment, tenant_json) -> bytes | None\n\n"
"The leaf hash input (0x00 + leaf text) this module builds for one row, or\n"
"None where it would call the row odd: for the differential test only.");

static PyObject *leaf(PyObject *self, PyObject *args) {
    /* Builds the row in an in-memory database so the test exercises the
     * very code path (column types included) that `scan` runs. */
    PyObject *values;
    const char *tenant;
    Py_ssize_t tenant_len;
    if (!PyArg_ParseTuple(args, "O!y#", &PyTuple_Type, &values, &tenant, &tenant_len))
        return NULL;
    if (PyTuple_GET_SIZE(values) != 13) {
        PyErr_SetString(PyExc_TypeError, "leaf: 13 column values expected");
        return NULL;
    }
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    PyObject *out = NULL;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, NULL, "
                           "NULL, ?13, NULL",
                           -1, &st, NULL) != SQLITE_OK) {
        PyErr_SetString(PyExc_RuntimeError, "leaf: cannot prepare");
        goto done;
    }
    for (int i = 0; i < 13; i++) {
        PyObject *v = PyTuple_GET_ITEM(values, i);
        int rc;
        if (v == Py_None) {
            rc = sqlite3_bind_null(st, i + 1);
        } else if (PyLong_Check(v)) {
            long long x = PyLong_AsLongLong(v);
            if (x == -1 && PyErr_Occurred()) goto done;
            rc = sqlite3_bind_int64(st, i + 1, x);
        } else if (PyUnicode_Check(v)) {
            Py_ssize_t n;
            const char *u = PyUnicode_AsUTF8AndSize(v, &n);
            if (!u) goto done;
            rc = sqlite3_bind_text(st, i + 1, u, (int)n, SQLITE_TRANSIENT);
        } else if (PyBytes_Check(v)) {
            rc = sqlite3_bind_blob(st, i + 1, PyBytes_AS_STRING(v), (int)PyBytes_GET_SIZE(v),
                                   SQLITE_TRANSIENT);
        } else {
            PyErr_SetString(PyExc_TypeError, "leaf: None, int, str or bytes expected");
            goto done;
        }
        if (rc != SQLITE_OK) {
            PyErr_SetString(PyExc_RuntimeError, "leaf: cannot bind");
            goto done;
        }
    }
    if (sqlite3_step(st) != SQLITE_ROW) {
        PyErr_SetString(PyExc_RuntimeError, "leaf: no row");
        goto done;
    }
    scan_t s;
    memset(&s, 0, sizeof s);
    s.tenant_json = tenant;
    s.tenant_len = tenant_len;
    row_t row;
    from_stmt(st, &row);
    int r = build_leaf(&s, &row);
    if (r == 0)
        out = PyBytes_FromStringAndSize((char *)s.leaf.p, (Py_ssize_t)s.leaf.len);
    else if (r == -2)
        out = Py_NewRef(Py_None);
    else
        PyErr_NoMemory();
    free(s.leaf.p);
done:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return out;
}

PyDoc_STRVAR(node_hashes_doc,
"node_hashes(row: list[bytes]) -> list[bytes]\n\n"
"RFC 6962 interior nodes SHA-256(0x01 || row[i] || row[i+1]) for each pair\n"
"of a tree level, left to right; `row` holds an even number of 32-byte hashes.");

static PyObject *node_hashes(PyObject *self, PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "node_hashes: a list of bytes expected");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    if (n & 1) {
        PyErr_SetString(PyExc_ValueError, "node_hashes: an even number of hashes expected");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *h = PyList_GET_ITEM(arg, i);
        if (!PyBytes_Check(h) || PyBytes_GET_SIZE(h) != HASH) {
            PyErr_SetString(PyExc_ValueError, "node_hashes: each hash is 32 bytes");
            return NULL;
        }
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    PyObject *out = ctx ? PyList_New(n / 2) : NULL;
    if (!ctx) PyErr_NoMemory();
    unsigned char node[1 + 2 * HASH];
    node[0] = 0x01;
    for (Py_ssize_t i = 0; out && i < n; i += 2) {
        memcpy(node + 1, PyBytes_AS_STRING(PyList_GET_ITEM(arg, i)), HASH);
        memcpy(node + 1 + HASH, PyBytes_AS_STRING(PyList_GET_ITEM(arg, i + 1)), HASH);
        unsigned char digest[HASH];
        PyObject *h = NULL;
        if (EVP_DigestInit_ex2(ctx, SHA256_MD, NULL) && EVP_DigestUpdate(ctx, node, sizeof node) &&
            EVP_DigestFinal_ex(ctx, digest, NULL))
            h = PyBytes_FromStringAndSize((char *)digest, HASH);
        else
            PyErr_SetString(PyExc_RuntimeError, "node_hashes: SHA-256 failed");
        if (!h) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i / 2, h);
    }
    EVP_MD_CTX_free(ctx);
    return out;
}

/* --- appends: the per-event work that needs no lock --------------------------
 * AuditLog._prepare, event by event: the payload's commitment, and each
 * leaf's bytes but for recorded_at, security and seq (its head and tail, as
 * core.leaf's leaf_head and leaf_tail build them, from the same key table as
 * the scan's leaf above). The actor's hash, an IP address's bytes and a
 * payload not encoded yet come from Python callables, called once per
 * distinct value, so those rules stay in Python. */

enum { H_ACTOR, H_IP_BYTES, H_PAYLOAD, N_HOOKS };
/* getattr without the generic lookup, for the two kinds of object the
 * append path reads field by field: msgspec Structs, whose fields are
 * member descriptors at fixed offsets (one load), and the frozen
 * dataclasses (Event, Target, ...), whose fields live in the instance dict
 * with no data descriptor on the class to shadow them (one dict lookup by
 * an interned name). What a (type, name) pair is is found once and kept in
 * a small cache by pointer, with a reference to the type (its address
 * cannot be reused) and its version tag (a type changed since is looked at
 * again). Anything else (a property, a missing key, an unset slot) goes
 * through PyObject_GetAttr, errors included. The generic lookups were about
 * a fifth of `finish`'s and `prepare`'s time (issue 7). */
enum { VIA_GETATTR, VIA_OFFSET, VIA_DICT };
typedef struct {
    PyTypeObject *type;
    PyObject *name;
    unsigned int version;
    int via;
    Py_ssize_t offset;
} slot_t;
#define N_SLOTS 128
static slot_t SLOTS[N_SLOTS];

static PyObject *field(PyObject *obj, PyObject *name) {
    PyTypeObject *t = Py_TYPE(obj);
    slot_t *c = &SLOTS[(((uintptr_t)t >> 4) * 31u + ((uintptr_t)name >> 4)) % N_SLOTS];
    if (c->type != t || c->name != name || c->version != t->tp_version_tag ||
        !PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG)) {
        PyObject *d = _PyType_Lookup(t, name); /* borrowed; also assigns the version tag */
        int via = VIA_GETATTR;
        Py_ssize_t offset = -1;
        if (d && Py_IS_TYPE(d, &PyMemberDescr_Type)) {
            PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
            if (m->type == T_OBJECT_EX && !(m->flags & READ_RESTRICTED)) {
                via = VIA_OFFSET;
                offset = m->offset;
            }
        } else if ((!d || !Py_TYPE(d)->tp_descr_set) && t->tp_getattro == PyObject_GenericGetAttr &&
                   (t->tp_dictoffset != 0 || PyType_HasFeature(t, Py_TPFLAGS_MANAGED_DICT))) {
            via = VIA_DICT;
        }
        if (!PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG)) return PyObject_GetAttr(obj, name);
        Py_INCREF(t);
        Py_XSETREF(c->type, t);
        c->name = name; /* the module's interned names, never freed */
        c->version = t->tp_version_tag;
        c->via = via;
        c->offset = offset;
    }
    if (c->via == VIA_OFFSET) {
        PyObject *v = *(PyObject **)((char *)obj + c->offset);
        if (v) return Py_NewRef(v);
    } else if (c->via == VIA_DICT) {
        PyObject **dp = _PyObject_GetDictPtr(obj);
        if (dp && *dp) {
            PyObject *v = PyDict_GetItemWithError(*dp, name);
            if (v) return Py_NewRef(v);
            if (PyErr_Occurred()) return NULL;
        }
    }
    return PyObject_GetAttr(obj, name);
}

#define N_PREPARED 15

static PyObject *A_payload, *A_actor, *A_action, *A_info, *A_category, *A_security, *A_target,
    *A_type, *A_id, *A_severity, *A_context, *A_outcome, *A_occurred_at, *K_ip;

/* `o` (a str, or None where `nullable`) as a JSON string; 1 for anything
 * else, or a lone surrogate (the Python path writes those with
 * surrogatepass): the batch is left to Python. */
static int put_obj(buf_t *b, PyObject *o, int nullable) {
    if (o == Py_None && nullable) return PUTS(b, "null") ? -1 : 0;
    if (!PyUnicode_CheckExact(o)) return 1;
    Py_ssize_t n;
    const char *u = PyUnicode_AsUTF8AndSize(o, &n);
    if (!u) {
        PyErr_Clear();
        return 1;
    }
    return put_json(b, (const unsigned char *)u, (int)n) ? -1 : 0;
}

static int put_bytes(buf_t *b, PyObject *o) {
    return buf_put(b, PyBytes_AS_STRING(o), (size_t)PyBytes_GET_SIZE(o)) ? -1 : 0;
}

/* The text of `b` as a new bytes object, stored in `dict` under `key`. */
static PyObject *keep(PyObject *dict, PyObject *key, const buf_t *b) {
    PyObject *v = PyBytes_FromStringAndSize((const char *)b->p, (Py_ssize_t)b->len);
    if (v && PyDict_SetItem(dict, key, v)) Py_CLEAR(v);
    return v;
}

typedef struct {
    PyObject *by_actor, *starts, *arounds, *afters, *ips;
    PyObject *hooks[N_HOOKS];
    PyObject *new_ids;
    Py_ssize_t next_id;
    const char *tenant_json;
    Py_ssize_t tenant_len;
    EVP_MD_CTX *ctx;
    buf_t head, tail, part;
} prep_t;

/* Parts many events of a batch share, each made once and kept (a new
 * reference; NULL with an error, or NULL with *slow set). */

/* The head up to "id": (leaf_head_start): action, actor, category. */
static PyObject *head_start(prep_t *p, PyObject *key, PyObject *action, PyObject *a_hash,
                            PyObject *a_type, PyObject *category, int *slow) {
    PyObject *v = PyDict_GetItemWithError(p->starts, key);
    if (v || PyErr_Occurred()) return Py_XNewRef(v);
    PyObject *vals[] = {action, a_hash, a_type, category};
    buf_t *b = &p->part;
    b->len = 0;
    if (PUTS(b, "\x00")) return PyErr_NoMemory();
    for (int k = 0; k < 4; k++) {
        int rc = buf_put(b, HEAD[k].before, strlen(HEAD[k].before)) ? -1
                                                                      : put_obj(b, vals[k], HEAD[k].nullable);
        if (rc > 0) *slow = 1;
        if (rc) return rc < 0 ? PyErr_NoMemory() : NULL;
    }
    if (buf_put(b, HEAD[4].before, strlen(HEAD[4].before))) return PyErr_NoMemory();
    return keep(p->starts, key, b);
}

/* From the end of the id to the commitment's hex (leaf_after_id). */
static PyObject *after_id(prep_t *p, PyObject *outcome, int *slow) {
    PyObject *v = PyDict_GetItemWithError(p->afters, outcome);
    if (v || PyErr_Occurred()) return Py_XNewRef(v);
    buf_t *b = &p->part;
    b->len = 0;
    int rc = buf_put(b, HEAD[5].before, strlen(HEAD[5].before)) ? -1 : put_obj(b, outcome, 0);
    if (!rc) rc = PUTS(b, ",\"payload_commitment\":\"") ? -1 : 0;
    if (rc > 0) *slow = 1;
    if (rc) return rc < 0 ? PyErr_NoMemory() : NULL;
    return keep(p->afters, outcome, b);
}

/* The tail around the target id (leaf_tail_around): a pair of bytes. */
static PyObject *tail_around(prep_t *p, PyObject *key, long sev, PyObject *target_type,
                             int *slow) {
    PyObject *v = PyDict_GetItemWithError(p->arounds, key);
    if (v || PyErr_Occurred()) return Py_XNewRef(v);
    if (sev < 0 || sev >= N_SEVERITY) {
        *slow = 1;
        return NULL;
    }
    buf_t *b = &p->part;
    b->len = 0;
    if (PUTS(b, ",\"severity\":\"") || buf_put(b, SEVERITY[sev], strlen(SEVERITY[sev])) ||
        PUTS(b, "\"") || buf_put(b, TAIL[0].before, strlen(TAIL[0].before)))
        return PyErr_NoMemory();
    PyObject *before = PyBytes_FromStringAndSize((const char *)b->p, (Py_ssize_t)b->len);
    if (!before) return NULL;
    b->len = 0;
    int rc = buf_put(b, TAIL[1].before, strlen(TAIL[1].before)) ? -1 : put_obj(b, target_type, 1);
    if (!rc)
        rc = PUTS(b, ",\"tenant\":") || buf_put(b, p->tenant_json, (size_t)p->tenant_len) ||
                     PUTS(b, "}")
                 ? -1
                 : 0;
    if (rc) {
        Py_DECREF(before);
        if (rc > 0) *slow = 1;
        return rc < 0 ? PyErr_NoMemory() : NULL;
    }
    PyObject *after = PyBytes_FromStringAndSize((const char *)b->p, (Py_ssize_t)b->len);
    if (!after) {
        Py_DECREF(before);
        return NULL;
    }
    v = untrack_tuple(PyTuple_Pack(2, before, after));
    Py_DECREF(before);
    Py_DECREF(after);
    if (v && PyDict_SetItem(p->arounds, key, v)) Py_CLEAR(v);
    return v;
}

/* dict[key], or hook(arg) stored under key: a new reference. */
static PyObject *hooked(PyObject *dict, PyObject *key, PyObject *hook, PyObject *arg) {
    PyObject *v = PyDict_GetItemWithError(dict, key);
    if (v || PyErr_Occurred()) return Py_XNewRef(v);
    v = PyObject_CallOneArg(hook, arg);
    if (v && PyDict_SetItem(dict, key, v)) Py_CLEAR(v);
    return v;
}

/* One event: its Prepared fields into `f` (new references), its head and
 * tail into p->head and p->tail. 0 done, 1 leave the batch to Python, -1 a
 * Python error. */
static int prepare_one(prep_t *p, PyObject *ev, const unsigned char *salt, PyObject **f) {
    int rc = -1, slow = 0;
    PyObject *payload = NULL, *actor = NULL, *akey = NULL, *pa = NULL, *info = NULL,
             *skey = NULL, *start = NULL, *target = NULL, *sev = NULL, *tkey = NULL,
             *around = NULL, *context = NULL, *ip = NULL, *after = NULL;
    unsigned char commitment[HASH];

    if (!(payload = field(ev, A_payload))) goto done;
    if (payload == Py_None) {
        Py_SETREF(payload, PyObject_CallOneArg(p->hooks[H_PAYLOAD], ev));
        if (!payload) goto done;
    }
    if (!PyBytes_CheckExact(payload)) goto slow;
    /* The events hold their actor objects for the whole batch, so an
     * object's address names it, as in the Python loop. */
    if (!(actor = field(ev, A_actor))) goto done;
    if (!(akey = PyLong_FromVoidPtr(actor))) goto done;
    if (!(pa = hooked(p->by_actor, akey, p->hooks[H_ACTOR], actor))) goto done;
    if (!PyTuple_CheckExact(pa) || PyTuple_GET_SIZE(pa) != 2) goto slow;
    PyObject *a_hash = PyTuple_GET_ITEM(pa, 0), *a_type = PyTuple_GET_ITEM(pa, 1);

    if (!(f[1] = field(ev, A_action))) goto done;
    if (!(info = field(ev, A_info))) goto done;
    if (!(f[2] = field(info, A_category))) goto done;
    if (!(f[4] = field(info, A_security))) goto done;
    if (!(skey = untrack_tuple(PyTuple_Pack(3, akey, f[1], f[2])))) goto done;
    if (!(start = head_start(p, skey, f[1], a_hash, a_type, f[2], &slow))) goto check;

    if (!(target = field(ev, A_target))) goto done;
    if (target == Py_None) {
        f[7] = Py_NewRef(Py_None);
        f[8] = Py_NewRef(Py_None);
    } else {
        if (!(f[7] = field(target, A_type))) goto done;
        if (!(f[8] = field(target, A_id))) goto done;
    }
    if (!(sev = field(ev, A_severity))) goto done;
    if (!(f[3] = PyNumber_Index(sev))) goto done; /* int(ev.severity) */
    long sev_n = PyLong_AsLong(f[3]);
    if (sev_n == -1 && PyErr_Occurred()) goto done;
    if (!(tkey = untrack_tuple(PyTuple_Pack(2, f[3], f[7])))) goto done;
    if (!(around = tail_around(p, tkey, sev_n, f[7], &slow))) goto check;

    if (!(context = field(ev, A_context))) goto done;
    ip = PyObject_GetItem(context, K_ip); /* a dict, or a read-only view of one */
    if (!ip) {
        if (!PyErr_ExceptionMatches(PyExc_KeyError)) goto done;
        PyErr_Clear();
    }
    if (ip && PyUnicode_Check(ip)) {
        if (!(f[11] = hooked(p->ips, ip, p->hooks[H_IP_BYTES], ip))) goto done;
    } else {
        f[11] = Py_NewRef(Py_None);
    }

    if (!(f[9] = field(ev, A_outcome))) goto done;
    if (!(after = after_id(p, f[9], &slow))) goto check;

    if (digest3(p->ctx, "\x02", 1, salt, 32, PyBytes_AS_STRING(payload),
                (size_t)PyBytes_GET_SIZE(payload), commitment)) {
        PyErr_SetString(PyExc_MemoryError, "prepare: SHA-256 failed");
        goto done;
    }
    if (!(f[0] = field(ev, A_id))) goto done;
    if (f[0] == Py_None) {
        if (p->next_id >= PyList_GET_SIZE(p->new_ids)) goto slow;
        Py_SETREF(f[0], Py_NewRef(PyList_GET_ITEM(p->new_ids, p->next_id++)));
    }
    if (!(f[10] = field(ev, A_occurred_at))) goto done;

    /* head: start, the id, after, the commitment's hex, then up to the
     * recorded_at value */
    p->head.len = 0;
    int r = put_bytes(&p->head, start);
    if (!r) r = put_obj(&p->head, f[0], 0);
    if (!r) r = put_bytes(&p->head, after);
    if (!r && buf_reserve(&p->head, 2 * HASH)) r = -1;
    if (!r) {
        for (int k = 0; k < HASH; k++) {
            p->head.p[p->head.len++] = (unsigned char)HEX[commitment[k] >> 4];
            p->head.p[p->head.len++] = (unsigned char)HEX[commitment[k] & 15];
        }
        r = PUTS(&p->head, "\",\"recorded_at\":\"") ? -1 : 0;
    }
    /* tail: the parts around the target id */
    p->tail.len = 0;
    if (!r) r = put_bytes(&p->tail, PyTuple_GET_ITEM(around, 0));
    if (!r) r = put_obj(&p->tail, f[8], 1);
    if (!r) r = put_bytes(&p->tail, PyTuple_GET_ITEM(around, 1));
    if (r > 0) goto slow;
    if (r < 0) {
        PyErr_NoMemory();
        goto done;
    }
    f[5] = Py_NewRef(a_hash);
    f[6] = Py_NewRef(a_type);
    f[12] = Py_NewRef(payload);
    if (!(f[13] = PyBytes_FromStringAndSize((const char *)salt, 32))) goto done;
    if (!(f[14] = PyBytes_FromStringAndSize((const char *)commitment, HASH))) goto done;
    rc = 0;
    goto done;
check: /* a shared part was not made: an error, or something for Python */
    if (!slow) goto done;
slow:
    rc = 1;
done:
    Py_XDECREF(payload);
    Py_XDECREF(actor);
    Py_XDECREF(akey);
    Py_XDECREF(pa);
    Py_XDECREF(info);
    Py_XDECREF(skey);
    Py_XDECREF(start);
    Py_XDECREF(target);
    Py_XDECREF(sev);
    Py_XDECREF(tkey);
    Py_XDECREF(around);
    Py_XDECREF(context);
    Py_XDECREF(ip);
    Py_XDECREF(after);
    return rc;
}

PyDoc_STRVAR(prepare_doc,
"prepare(events, salts, new_ids, tenant_json, hooks, ips, prepared_type)\n"
"    -> (prepared, heads, tails) or None\n\n"
"AuditLog._prepare's loop: per event its Prepared (a `prepared_type`), and\n"
"its leaf head and tail bytes. `salts` holds 32 bytes per event, `new_ids`\n"
"the ids of the events without one, in order. `hooks`: (actor_of(actor) ->\n"
"(hash, type), ip_bytes(text), payload_bytes(event)), each called once per\n"
"distinct value; `ips` caches ip_bytes across calls. None: an event this\n"
"does not handle (a value that is not what validation gives); run the\n"
"Python loop instead. Exceptions from the hooks propagate.");

static PyObject *prepare(PyObject *self, PyObject *args) {
    PyObject *events, *new_ids, *hooks, *ips, *ptype_obj;
    const char *tenant;
    Py_ssize_t tenant_len;
    Py_buffer salts;
    if (!PyArg_ParseTuple(args, "O!y*O!y#O!O!O!", &PyList_Type, &events, &salts, &PyList_Type,
                          &new_ids, &tenant, &tenant_len, &PyTuple_Type, &hooks, &PyDict_Type,
                          &ips, &PyType_Type, &ptype_obj))
        return NULL;
    PyTypeObject *ptype = (PyTypeObject *)ptype_obj;
    Py_ssize_t n = PyList_GET_SIZE(events);
    if (PyTuple_GET_SIZE(hooks) != N_HOOKS || salts.len != 32 * n ||
        !PyType_IsSubtype(ptype, &PyTuple_Type)) {
        PyBuffer_Release(&salts);
        PyErr_SetString(PyExc_ValueError, "prepare: bad hooks, salts or prepared type");
        return NULL;
    }
    prep_t p;
    memset(&p, 0, sizeof p);
    for (int k = 0; k < N_HOOKS; k++) p.hooks[k] = PyTuple_GET_ITEM(hooks, k);
    p.tenant_json = tenant;
    p.tenant_len = tenant_len;
    p.new_ids = new_ids;
    p.ips = ips;
    PyObject *out = NULL, *prepared = PyList_New(n), *heads = PyList_New(n),
             *tails = PyList_New(n);
    p.by_actor = PyDict_New();
    p.starts = PyDict_New();
    p.arounds = PyDict_New();
    p.afters = PyDict_New();
    p.ctx = EVP_MD_CTX_new();
    if (!prepared || !heads || !tails || !p.by_actor || !p.starts || !p.arounds || !p.afters ||
        !p.ctx) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto end;
    }
    const unsigned char *salt = salts.buf;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *f[N_PREPARED] = {NULL};
        int rc = prepare_one(&p, PyList_GET_ITEM(events, i), salt + 32 * i, f);
        PyObject *item = NULL, *h = NULL, *t = NULL;
        if (rc == 0 && (item = ptype->tp_alloc(ptype, N_PREPARED)) &&
            (h = PyBytes_FromStringAndSize((const char *)p.head.p, (Py_ssize_t)p.head.len)) &&
            (t = PyBytes_FromStringAndSize((const char *)p.tail.p, (Py_ssize_t)p.tail.len))) {
            for (int k = 0; k < N_PREPARED; k++) PyTuple_SET_ITEM(item, k, f[k]);
            PyList_SET_ITEM(prepared, i, untrack_tuple(item));
            PyList_SET_ITEM(heads, i, h);
            PyList_SET_ITEM(tails, i, t);
            continue;
        }
        if (item) {
            for (int k = 0; k < N_PREPARED; k++) PyTuple_SET_ITEM(item, k, Py_NewRef(Py_None));
            Py_DECREF(item);
        }
        Py_XDECREF(h);
        for (int k = 0; k < N_PREPARED; k++) Py_XDECREF(f[k]);
        if (rc == 1) out = Py_NewRef(Py_None);
        else if (rc == 0 && !PyErr_Occurred()) PyErr_NoMemory();
        goto end;
    }
    out = PyTuple_Pack(3, prepared, heads, tails);
end:
    PyBuffer_Release(&salts);
    Py_XDECREF(prepared);
    Py_XDECREF(heads);
    Py_XDECREF(tails);
    Py_XDECREF(p.by_actor);
    Py_XDECREF(p.starts);
    Py_XDECREF(p.arounds);
    Py_XDECREF(p.afters);
    EVP_MD_CTX_free(p.ctx);
    free(p.head.p);
    free(p.tail.p);
    free(p.part.p);
    return out;
}

PyDoc_STRVAR(leaf_hashes_doc,
"leaf_hashes(prepared, heads, tails, middles, seq0) -> list[bytes]\n\n"
"plan_append's leaf hashes: SHA-256 of head + middles[security] + str(seq)\n"
"+ tail for each event, seqs counting from seq0; `middles` is leaf_middle's\n"
"(security false, security true) pair, security the Prepared's item 4.");

static PyObject *leaf_hashes(PyObject *self, PyObject *args) {
    PyObject *prepared, *heads, *tails;
    const char *mid[2];
    Py_ssize_t mid_n[2];
    long long seq;
    if (!PyArg_ParseTuple(args, "O!O!O!(y#y#)L", &PyList_Type, &prepared, &PyList_Type, &heads,
                          &PyList_Type, &tails, &mid[0], &mid_n[0], &mid[1], &mid_n[1], &seq))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(prepared);
    if (PyList_GET_SIZE(heads) != n || PyList_GET_SIZE(tails) != n) {
        PyErr_SetString(PyExc_ValueError, "leaf_hashes: lists of different lengths");
        return NULL;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    PyObject *out = PyList_New(n);
    buf_t b = {NULL, 0, 0};
    if (!ctx || !out) {
        EVP_MD_CTX_free(ctx);
        Py_XDECREF(out);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++, seq++) {
        PyObject *p = PyList_GET_ITEM(prepared, i), *h = PyList_GET_ITEM(heads, i),
                 *t = PyList_GET_ITEM(tails, i);
        if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) < 5 || !PyBytes_Check(h) ||
            !PyBytes_Check(t)) {
            PyErr_SetString(PyExc_TypeError, "leaf_hashes: expected Prepared rows and bytes");
            goto fail;
        }
        int sec = PyObject_IsTrue(PyTuple_GET_ITEM(p, 4));
        if (sec < 0) goto fail;
        char digits[24];
        int nd = snprintf(digits, sizeof digits, "%lld", seq);
        b.len = 0;
        unsigned char lh[HASH];
        if (buf_put(&b, PyBytes_AS_STRING(h), (size_t)PyBytes_GET_SIZE(h)) ||
            buf_put(&b, mid[sec], (size_t)mid_n[sec]) || buf_put(&b, digits, (size_t)nd) ||
            digest3(ctx, b.p, b.len, PyBytes_AS_STRING(t), (size_t)PyBytes_GET_SIZE(t), NULL, 0,
                    lh)) {
            PyErr_NoMemory();
            goto fail;
        }
        PyObject *v = PyBytes_FromStringAndSize((const char *)lh, HASH);
        if (!v) goto fail;
        PyList_SET_ITEM(out, i, v);
    }
    EVP_MD_CTX_free(ctx);
    free(b.p);
    return out;
fail:
    EVP_MD_CTX_free(ctx);
    free(b.p);
    Py_DECREF(out);
    return NULL;
}

/* --- appends: a write connection that lets go of the GIL once per call --------
 * The sqlite3 module lets go of the GIL for every statement step and must
 * wait for it again after each, while threads preparing the next batches
 * hold it: a group commit's ten statements and thousand node rows cost the
 * writer thread more time waiting than writing. SQLiteBatch.run takes the
 * whole list of statements of a step of the group commit (BEGIN and the
 * tenant state; or the rows, nodes, state and COMMIT), binds every value,
 * then runs them all without the GIL. The values are the Python objects'
 * own buffers, kept alive by the caller's list for the call. */

typedef struct {
    PyObject_HEAD
    sqlite3 *db;
    struct {
        char *sql;
        size_t len;
        sqlite3_stmt *st;
    } cache[32];
    unsigned next_slot;
} batch_t;

typedef struct {
    int kind; /* V_NULL, V_INT, V_TEXT, V_BLOB; V_OTHER: a float */
    int64_t i;
    double d;
    const char *p;
    Py_ssize_t n;
} param_t;

typedef struct {
    const char *sql;
    Py_ssize_t sql_len;
    param_t *params;
    Py_ssize_t n_params;
    int columns; /* of its result, -1 before it runs */
    buf_t out;   /* its rows, column by column: kind byte, then the value */
} step_t;

static sqlite3_stmt *batch_stmt(batch_t *b, const char *sql, size_t len, int *rc) {
    for (unsigned k = 0; k < 32; k++)
        if (b->cache[k].st && b->cache[k].len == len && memcmp(b->cache[k].sql, sql, len) == 0)
            return b->cache[k].st;
    sqlite3_stmt *st = NULL;
    *rc = sqlite3_prepare_v3(b->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &st, NULL);
    if (*rc != SQLITE_OK) return NULL;
    unsigned k = b->next_slot++ % 32;
    sqlite3_finalize(b->cache[k].st);
    free(b->cache[k].sql);
    b->cache[k].sql = malloc(len);
    if (!b->cache[k].sql) {
        sqlite3_finalize(st);
        b->cache[k].st = NULL;
        *rc = SQLITE_NOMEM;
        return NULL;
    }
    memcpy(b->cache[k].sql, sql, len);
    b->cache[k].len = len;
    b->cache[k].st = st;
    return st;
}

/* Run one step to its end, its rows into s->out. An SQLite result code. */
static int batch_step(batch_t *b, step_t *s) {
    int rc = SQLITE_OK;
    sqlite3_stmt *st = batch_stmt(b, s->sql, (size_t)s->sql_len, &rc);
    if (!st) return rc;
    if (sqlite3_bind_parameter_count(st) != s->n_params) {
        return SQLITE_RANGE;
    }
    for (Py_ssize_t k = 0; k < s->n_params && rc == SQLITE_OK; k++) {
        const param_t *v = &s->params[k];
        int at = (int)k + 1;
        switch (v->kind) {
            case V_NULL: rc = sqlite3_bind_null(st, at); break;
            case V_INT: rc = sqlite3_bind_int64(st, at, v->i); break;
            case V_OTHER: rc = sqlite3_bind_double(st, at, v->d); break;
            case V_TEXT: rc = sqlite3_bind_text64(st, at, v->p, (sqlite3_uint64)v->n, SQLITE_STATIC, SQLITE_UTF8); break;
            default: rc = sqlite3_bind_blob64(st, at, v->p, (sqlite3_uint64)v->n, SQLITE_STATIC);
        }
    }
    s->columns = sqlite3_column_count(st);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < s->columns && rc == SQLITE_ROW; c++) {
            unsigned char kind;
            int t = sqlite3_column_type(st, c);
            int64_t i;
            double d;
            int n;
            const void *p;
            switch (t) {
                case SQLITE_INTEGER:
                    kind = V_INT;
                    i = sqlite3_column_int64(st, c);
                    if (buf_put(&s->out, &kind, 1) || buf_put(&s->out, &i, sizeof i)) rc = SQLITE_NOMEM;
                    break;
                case SQLITE_FLOAT:
                    kind = V_OTHER;
                    d = sqlite3_column_double(st, c);
                    if (buf_put(&s->out, &kind, 1) || buf_put(&s->out, &d, sizeof d)) rc = SQLITE_NOMEM;
                    break;
                case SQLITE_NULL:
                    kind = V_NULL;
                    if (buf_put(&s->out, &kind, 1)) rc = SQLITE_NOMEM;
                    break;
                default:
                    kind = t == SQLITE_TEXT ? V_TEXT : V_BLOB;
                    p = t == SQLITE_TEXT ? (const void *)sqlite3_column_text(st, c)
                                         : sqlite3_column_blob(st, c);
                    n = sqlite3_column_bytes(st, c);
                    if (buf_put(&s->out, &kind, 1) || buf_put(&s->out, &n, sizeof n) ||
                        (n && buf_put(&s->out, p, (size_t)n)))
                        rc = SQLITE_NOMEM;
            }
        }
        if (rc == SQLITE_ROW) rc = SQLITE_OK; /* on to the next row */
    }
    if (rc == SQLITE_DONE) rc = SQLITE_OK;
    int reset = sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* the bound buffers are only the call's */
    if (rc == SQLITE_OK) rc = reset;
    return rc;
}

/* The rows of a step as a list of tuples. */
static PyObject *batch_rows(const step_t *s) {
    PyObject *rows = PyList_New(0);
    const unsigned char *p = s->out.p, *end = s->out.p + s->out.len;
    while (rows && p < end) {
        PyObject *row = PyTuple_New(s->columns);
        if (!row) {
            Py_CLEAR(rows);
            break;
        }
        for (int c = 0; c < s->columns; c++) {
            unsigned char kind = *p++;
            PyObject *v;
            int64_t i;
            double d;
            int n;
            if (kind == V_INT) {
                memcpy(&i, p, sizeof i);
                p += sizeof i;
                v = PyLong_FromLongLong(i);
            } else if (kind == V_OTHER) {
                memcpy(&d, p, sizeof d);
                p += sizeof d;
                v = PyFloat_FromDouble(d);
            } else if (kind == V_NULL) {
                v = Py_NewRef(Py_None);
            } else {
                memcpy(&n, p, sizeof n);
                p += sizeof n;
                v = kind == V_TEXT ? PyUnicode_DecodeUTF8((const char *)p, n, NULL)
                                   : PyBytes_FromStringAndSize((const char *)p, n);
                p += n;
            }
            if (!v) {
                Py_DECREF(row);
                Py_CLEAR(rows);
                break;
            }
            PyTuple_SET_ITEM(row, c, v);
        }
        if (rows && PyList_Append(rows, row)) Py_CLEAR(rows);
        Py_DECREF(row);
    }
    return rows;
}

static void batch_error(int rc, const char *message) {
    PyObject *mod = PyImport_ImportModule("sqlite3");
    if (!mod) return;
    const char *name = (rc & 0xff) == SQLITE_CONSTRAINT ? "IntegrityError" : "OperationalError";
    PyObject *cls = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    if (!cls) return;
    PyErr_SetString(cls, message);
    Py_DECREF(cls);
}

PyDoc_STRVAR(batch_run_doc,
"run(steps) -> list\n\n"
"Run `steps`, a list of (sql, params) pairs, in order, without the GIL;\n"
"params hold None, int, float, str or bytes. Returns per step the list of\n"
"its rows (tuples), or None for a statement that returns no columns. The\n"
"first failing step stops the rest and raises sqlite3.IntegrityError (a\n"
"constraint) or sqlite3.OperationalError; the transaction is left as it is.");

static PyObject *batch_run(batch_t *self, PyObject *steps_obj) {
    if (!self->db) {
        batch_error(SQLITE_MISUSE, "the connection is closed");
        return NULL;
    }
    PyObject *steps = PySequence_Fast(steps_obj, "run: steps must be a list");
    if (!steps) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(steps);
    step_t *st = calloc((size_t)n + 1, sizeof *st);
    PyObject **keep = calloc((size_t)n + 1, sizeof *keep); /* each step's params, kept alive */
    PyObject *out = NULL;
    if (!st || !keep) {
        PyErr_NoMemory();
        goto end;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *params;
        st[k].sql = step_parts(PySequence_Fast_GET_ITEM(steps, k), &st[k].sql_len, &params);
        if (!st[k].sql) goto end;
        keep[k] = PySequence_Fast(params, "run: params must be a sequence");
        if (!keep[k]) goto end;
        Py_ssize_t m = PySequence_Fast_GET_SIZE(keep[k]);
        st[k].n_params = m;
        st[k].columns = -1;
        st[k].params = calloc((size_t)m + 1, sizeof(param_t));
        if (!st[k].params) {
            PyErr_NoMemory();
            goto end;
        }
        PyObject **items = PySequence_Fast_ITEMS(keep[k]);
        for (Py_ssize_t j = 0; j < m; j++) {
            PyObject *v = items[j];
            param_t *q = &st[k].params[j];
            if (v == Py_None) {
                q->kind = V_NULL;
            } else if (PyLong_Check(v)) {
                q->kind = V_INT;
                q->i = PyLong_AsLongLong(v);
                if (q->i == -1 && PyErr_Occurred()) goto end;
            } else if (PyFloat_Check(v)) {
                q->kind = V_OTHER;
                q->d = PyFloat_AS_DOUBLE(v);
            } else if (PyUnicode_Check(v)) {
                q->kind = V_TEXT;
                q->p = PyUnicode_AsUTF8AndSize(v, &q->n);
                if (!q->p) goto end;
            } else if (PyBytes_Check(v)) {
                q->kind = V_BLOB;
                q->p = PyBytes_AS_STRING(v);
                q->n = PyBytes_GET_SIZE(v);
            } else {
                PyErr_Format(PyExc_TypeError, "run: cannot bind a %s (step %zd, value %zd)",
                             Py_TYPE(v)->tp_name, k, j);
                goto end;
            }
        }
    }
    int rc = SQLITE_OK;
    Py_ssize_t failed = -1;
    char *message = NULL;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t k = 0; k < n; k++) {
        rc = batch_step(self, &st[k]);
        if (rc != SQLITE_OK) {
            failed = k;
            const char *m = rc == SQLITE_NOMEM   ? "out of memory"
                            : rc == SQLITE_RANGE ? "wrong number of values bound"
                                                 : sqlite3_errmsg(self->db);
            message = strdup(m ? m : "unknown error");
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (failed >= 0) {
        char text[512];
        snprintf(text, sizeof text, "%s (statement %zd of %zd)", message ? message : "out of memory",
                 failed + 1, n);
        free(message);
        batch_error(rc, text);
        goto end;
    }
    out = PyList_New(n);
    for (Py_ssize_t k = 0; out && k < n; k++) {
        PyObject *rows = st[k].columns > 0 ? batch_rows(&st[k]) : Py_NewRef(Py_None);
        if (!rows) Py_CLEAR(out);
        else PyList_SET_ITEM(out, k, rows);
    }
end:
    for (Py_ssize_t k = 0; st && k < n; k++) {
        free(st[k].params);
        free(st[k].out.p);
        Py_XDECREF(keep[k]);
    }
    free(st);
    free(keep);
    Py_DECREF(steps);
    return out;
}

static void batch_close_db(batch_t *self) {
    for (unsigned k = 0; k < 32; k++) {
        sqlite3_finalize(self->cache[k].st);
        free(self->cache[k].sql);
        self->cache[k].st = NULL;
        self->cache[k].sql = NULL;
    }
    if (self->db) sqlite3_close_v2(self->db);
    self->db = NULL;
}

static PyObject *batch_close(batch_t *self, PyObject *unused) {
    batch_close_db(self);
    Py_RETURN_NONE;
}

static PyObject *batch_in_transaction(batch_t *self, void *closure) {
    return PyBool_FromLong(self->db && !sqlite3_get_autocommit(self->db));
}

/* kimonaudit_expect(ok): 1, or the statement fails when ok is false. The
 * append session checks a tenant state it remembers (instead of reading it
 * first) with it, inside the commit's own call, before anything is written. */
#define STALE_MESSAGE "kimonaudit: stale tenant state"
static void expect_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
    (void)argc;
    if (sqlite3_value_type(argv[0]) == SQLITE_NULL || !sqlite3_value_int64(argv[0]))
        sqlite3_result_error(ctx, STALE_MESSAGE, -1);
    else
        sqlite3_result_int(ctx, 1);
}

static int batch_init(batch_t *self, PyObject *args, PyObject *kwds) {
    const char *path;
    PyObject *pragmas;
    static char *kw[] = {"path", "pragmas", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sO!", kw, &path, &PyList_Type, &pragmas))
        return -1;
    batch_close_db(self);
    int rc = sqlite3_open_v2(path, &self->db, SQLITE_OPEN_READWRITE, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(self->db, "kimonaudit_expect", 1, SQLITE_UTF8, NULL,
                                        expect_fn, NULL, NULL, NULL);
    for (Py_ssize_t k = 0; rc == SQLITE_OK && k < PyList_GET_SIZE(pragmas); k++) {
        const char *sql = PyUnicode_AsUTF8(PyList_GET_ITEM(pragmas, k));
        if (!sql) {
            batch_close_db(self);
            return -1;
        }
        rc = sqlite3_exec(self->db, sql, NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        char text[512];
        snprintf(text, sizeof text, "cannot open %s for writing: %s", path,
                 self->db ? sqlite3_errmsg(self->db) : sqlite3_errstr(rc));
        batch_close_db(self);
        batch_error(rc, text);
        return -1;
    }
    return 0;
}

static void batch_dealloc(batch_t *self) {
    batch_close_db(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef batch_methods[] = {
    {"run", (PyCFunction)batch_run, METH_O, batch_run_doc},
    {"close", (PyCFunction)batch_close, METH_NOARGS, "Close the connection."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef batch_getset[] = {
    {"in_transaction", (getter)batch_in_transaction, NULL, "Whether a transaction is open.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject BatchType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kimonaudit._native.SQLiteBatch",
    .tp_basicsize = sizeof(batch_t),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "SQLiteBatch(path, pragmas): a write connection to an existing SQLite file\n"
              "(each pragma run once) whose run() executes many statements per call.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)batch_init,
    .tp_dealloc = (destructor)batch_dealloc,
    .tp_methods = batch_methods,
    .tp_getset = batch_getset,
};


/* --- ReadOnlyMap: an Event's context and metadata --------------------------------
 * A read-only view of a dict that the view alone holds, as mappingproxy is,
 * but one the cycle collector need not track when the dict holds nothing it
 * tracks (only strings, numbers, bools, None): such a view cannot be part of
 * a cycle. A mappingproxy is always tracked (its dealloc assumes so), and an
 * Event's two of them lived through a batch long enough to be promoted,
 * which made a full collection of the whole process's heap come every
 * 9,000 appended events (docs/scaling.md). */
typedef struct {
    PyObject_HEAD
    PyObject *dict;
} rmap_t;

static PyTypeObject ReadOnlyMapType;

/* A new view of `dict` (an exact dict, not copied: the caller gives up
 * writing to it). */
static PyObject *rmap_wrap(PyObject *dict) {
    rmap_t *self = PyObject_GC_New(rmap_t, &ReadOnlyMapType);
    if (!self) return NULL;
    self->dict = Py_NewRef(dict);
    if (PyObject_GC_IsTracked(dict)) PyObject_GC_Track(self);
    return (PyObject *)self;
}

static PyObject *rmap_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PyObject *dict;
    if (kwargs && PyDict_GET_SIZE(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "ReadOnlyMap() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "O:ReadOnlyMap", &dict)) return NULL;
    if (!PyDict_CheckExact(dict)) {
        /* A subclass's own methods would be bypassed by the views' reads. */
        PyErr_Format(PyExc_TypeError, "ReadOnlyMap() takes a dict, not %.100s", Py_TYPE(dict)->tp_name);
        return NULL;
    }
    (void)type;
    return rmap_wrap(dict);
}

static void rmap_dealloc(rmap_t *self) {
    if (PyObject_GC_IsTracked((PyObject *)self)) PyObject_GC_UnTrack(self);
    Py_CLEAR(self->dict);
    PyObject_GC_Del(self);
}

static int rmap_traverse(rmap_t *self, visitproc visit, void *arg) {
    Py_VISIT(self->dict);
    return 0;
}

static Py_ssize_t rmap_len(rmap_t *self) { return PyDict_GET_SIZE(self->dict); }

static PyObject *rmap_getitem(rmap_t *self, PyObject *key) { return PyObject_GetItem(self->dict, key); }

static int rmap_contains(rmap_t *self, PyObject *key) { return PyDict_Contains(self->dict, key); }

static PyObject *rmap_iter(rmap_t *self) { return PyObject_GetIter(self->dict); }

static PyObject *rmap_get(rmap_t *self, PyObject *const *args, Py_ssize_t n) {
    if (n < 1 || n > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", n);
        return NULL;
    }
    PyObject *v = PyDict_GetItemWithError(self->dict, args[0]);
    if (v) return Py_NewRef(v);
    if (PyErr_Occurred()) return NULL;
    return Py_NewRef(n == 2 ? args[1] : Py_None);
}

#define RMAP_DELEGATE(name)                                                   \
    static PyObject *rmap_##name(rmap_t *self, PyObject *Py_UNUSED(ignored)) { \
        return PyObject_CallMethod(self->dict, #name, NULL);                  \
    }
RMAP_DELEGATE(keys)
RMAP_DELEGATE(values)
RMAP_DELEGATE(items)
RMAP_DELEGATE(__reversed__)
#undef RMAP_DELEGATE

static PyObject *rmap_copy(rmap_t *self, PyObject *Py_UNUSED(ignored)) { return PyDict_Copy(self->dict); }

static PyObject *rmap_richcompare(rmap_t *self, PyObject *other, int op) {
    if (op != Py_EQ && op != Py_NE) Py_RETURN_NOTIMPLEMENTED;
    if (Py_IS_TYPE(other, &ReadOnlyMapType)) other = ((rmap_t *)other)->dict;
    return PyObject_RichCompare(self->dict, other, op);
}

static PyObject *rmap_repr(rmap_t *self) { return PyUnicode_FromFormat("ReadOnlyMap(%R)", self->dict); }

static PyObject *rmap_or(PyObject *a, PyObject *b) {
    /* As mappingproxy: a new dict; either side may be the view. */
    if (Py_IS_TYPE(a, &ReadOnlyMapType)) a = ((rmap_t *)a)->dict;
    if (Py_IS_TYPE(b, &ReadOnlyMapType)) b = ((rmap_t *)b)->dict;
    return PyNumber_Or(a, b);
}

static PyObject *rmap_ior(PyObject *self, PyObject *other) {
    PyErr_Format(PyExc_TypeError, "'|=' is not supported by %s; use '|' instead", Py_TYPE(self)->tp_name);
    return NULL;
}

static PyMappingMethods rmap_as_mapping = {
    .mp_length = (lenfunc)rmap_len,
    .mp_subscript = (binaryfunc)rmap_getitem,
};

static PySequenceMethods rmap_as_sequence = {
    .sq_contains = (objobjproc)rmap_contains,
};

static PyNumberMethods rmap_as_number = {
    .nb_or = rmap_or,
    .nb_inplace_or = rmap_ior,
};

static PyMethodDef rmap_methods[] = {
    {"get", (PyCFunction)(void (*)(void))rmap_get, METH_FASTCALL,
     "D.get(k[,d]) -> D[k] if k in D, else d. d defaults to None."},
    {"keys", (PyCFunction)rmap_keys, METH_NOARGS, "The dict's keys view."},
    {"values", (PyCFunction)rmap_values, METH_NOARGS, "The dict's values view."},
    {"items", (PyCFunction)rmap_items, METH_NOARGS, "The dict's items view."},
    {"copy", (PyCFunction)rmap_copy, METH_NOARGS, "A shallow copy, as a dict."},
    {"__reversed__", (PyCFunction)rmap___reversed__, METH_NOARGS, "Keys in reverse order."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ReadOnlyMapType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "kimonaudit._native.ReadOnlyMap",
    .tp_basicsize = sizeof(rmap_t),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_MAPPING,
    .tp_doc = "ReadOnlyMap(dict): a read-only view of a dict (as mappingproxy), untracked\n"
              "by the cycle collector while the dict holds no container.",
    .tp_new = rmap_new,
    .tp_dealloc = (destructor)rmap_dealloc,
    .tp_traverse = (traverseproc)rmap_traverse,
    .tp_hash = PyObject_HashNotImplemented,
    .tp_repr = (reprfunc)rmap_repr,
    .tp_richcompare = (richcmpfunc)rmap_richcompare,
    .tp_iter = (getiterfunc)rmap_iter,
    .tp_methods = rmap_methods,
    .tp_as_mapping = &rmap_as_mapping,
    .tp_as_sequence = &rmap_as_sequence,
    .tp_as_number = &rmap_as_number,
};

/* --- validation: the common event finished in C --------------------------------
 * core.decode._finish turns each struct msgspec.convert made from a library
 * caller's dict into an Event. This does the same for the events it can
 * vouch for: text that is printable ASCII, an actor already in `_actors`,
 * no timestamp or severity given, no float anywhere (the batch converted
 * without them), a payload the C encoder wrote as plain ASCII. Anything else
 * is None in the result, and _finish (whose reference, in turn, is
 * events.validate_event) does that event. Nothing here accepts an event
 * _finish would refuse: tests/core/test_decode_differential.py and
 * tests/test_native.py compare them. */

enum { F_UNSET, F_CATALOGUE, F_CUSTOM, F_ACTORS, F_TARGETS, F_RESERVED, F_NORMAL_IP, F_ENCODE,
       F_MAX_PAYLOAD, F_EVENT, F_TARGET, F_CHANGE, F_CACHE_LIMIT, F_ACTOR, F_ACTOR_TYPE,
       N_FINISH };

static PyObject *A_field, *A_before, *A_after, *A_name, *A_email, *A_metadata, *A_changes,
    *K_user_agent, *K_request_id, *K_changes, *K_context, *K_metadata, *K_occurred_at, *K_from,
    *K_to, *K_field, *K_type, *K_id, *K_action, *K_info, *K_severity, *K_actor, *K_target,
    *K_outcome, *K_payload, *S_success;

/* Printable ASCII (what _check_text passes without its regex). */
static int plain_text(PyObject *o) {
    if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_ASCII(o)) return 0;
    const unsigned char *p = PyUnicode_1BYTE_DATA(o);
    Py_ssize_t n = PyUnicode_GET_LENGTH(o);
    for (Py_ssize_t i = 0; i < n; i++)
        if (p[i] < 0x20 || p[i] > 0x7e) return 0;
    return 1;
}

/* Untrack `o` and its instance dict `dict` (see untrack_tuple) when every
 * value in the dict is untracked or one of the n `except`. */
static void untrack_if_plain(PyObject *o, PyObject *dict, PyObject *const *except, int n) {
    PyObject *key, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(dict, &pos, &key, &v)) {
        int plain = !PyObject_GC_IsTracked(v);
        for (int k = 0; !plain && k < n; k++) plain = v == except[k];
        if (!plain) return;
    }
    if (PyObject_GC_IsTracked(dict)) PyObject_GC_UnTrack(dict);
    if (PyObject_GC_IsTracked(o)) PyObject_GC_UnTrack(o);
}

/* A new object of a frozen dataclass with `dict` as its __dict__, as
 * object.__new__ and object.__setattr__ make it, untracked (see
 * untrack_tuple) when every value is untracked or one of the n `except`
 * (tracked objects the caller knows hold no way back). Steals `dict`. */
static PyObject *frozen(PyObject *type, PyObject *dict, PyObject *const *except, int n) {
    if (!dict) return NULL;
    PyTypeObject *t = (PyTypeObject *)type;
    PyObject *o = t->tp_alloc(t, 0);
    if (o && PyObject_GenericSetDict(o, dict, NULL)) Py_CLEAR(o);
    if (o) untrack_if_plain(o, dict, except, n);
    Py_DECREF(dict);
    return o;
}

/* An Actor or Target from decode.py's caches that the Python validator
 * made (an actor's first event took the slow path, say) is tracked, and
 * so was every Event holding it, for as long as the cache kept it: by
 * frozen's rule (untrack_if_plain) it need not be, and once settled it
 * stays so. */
static void settle(PyObject *o) {
    if (!PyObject_GC_IsTracked(o)) return;
    PyObject *dict = PyObject_GenericGetDict(o, NULL);
    if (!dict) {
        PyErr_Clear(); /* then it stays tracked, as it was */
        return;
    }
    untrack_if_plain(o, dict, NULL, 0);
    Py_DECREF(dict);
}

/* dict[key] = value, where both are borrowed. */
#define PUT(d, k, v) (PyDict_SetItem((d), (k), (v)) == 0)

static int absent(PyObject *v, PyObject *unset) { return v == unset || v == Py_None; }

/* cache[key] = value, emptying the cache first when it holds `limit` (a
 * Python int) entries, as decode.py's caches do. -1 on a Python error. */
static int cache_put(PyObject *cache, PyObject *key, PyObject *value, PyObject *limit) {
    Py_ssize_t most = PyLong_AsSsize_t(limit);
    if (most < 0 && PyErr_Occurred()) return -1;
    if (PyDict_GET_SIZE(cache) >= most) PyDict_Clear(cache);
    return PyDict_SetItem(cache, key, value);
}

/* An actor type as events._ACTOR_TYPE wants it: [a-z][a-z0-9_]{0,39}. */
static int actor_type_ok(PyObject *o) {
    if (!PyUnicode_CheckExact(o) || !PyUnicode_IS_ASCII(o)) return 0;
    const unsigned char *p = PyUnicode_1BYTE_DATA(o);
    Py_ssize_t n = PyUnicode_GET_LENGTH(o);
    if (n < 1 || n > 40 || p[0] < 'a' || p[0] > 'z') return 0;
    for (Py_ssize_t i = 1; i < n; i++)
        if (!((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= '0' && p[i] <= '9') || p[i] == '_'))
            return 0;
    return 1;
}

/* decode._actor for printable ASCII values: the (Actor, members) pair it
 * caches, or Py_None to leave the actor to it. */
static PyObject *new_actor(PyObject *const *cx, PyObject *const *parts) {
    PyObject *unset = cx[F_UNSET], *id = parts[0], *type = parts[1];
    PyObject *name = parts[2], *email = parts[3];
    if (!plain_text(id)) return Py_NewRef(Py_None);
    if (absent(type, unset)) type = cx[F_ACTOR_TYPE];
    else if (!actor_type_ok(type)) return Py_NewRef(Py_None);
    PyObject *empty = PyUnicode_New(0, 0);
    if (!empty) return NULL;
    PyObject **opt[2] = {&name, &email};
    for (int k = 0; k < 2; k++) {
        int blank = *opt[k] == unset ? 1 : PyObject_RichCompareBool(*opt[k], empty, Py_EQ);
        if (blank < 0) {
            Py_DECREF(empty);
            return NULL;
        }
        if (blank) *opt[k] = Py_None;
        else if (*opt[k] != Py_None && !plain_text(*opt[k])) {
            Py_DECREF(empty);
            return Py_NewRef(Py_None);
        }
    }
    Py_DECREF(empty);
    int members = 4;
    for (int k = 0; k < 4; k++) members -= parts[k] == unset;
    PyObject *d = PyDict_New();
    if (!d || !PUT(d, K_id, id) || !PUT(d, K_type, type) || !PUT(d, A_name, name) ||
        !PUT(d, A_email, email)) {
        Py_XDECREF(d);
        return NULL;
    }
    PyObject *actor = frozen(cx[F_ACTOR], d, NULL, 0);
    if (!actor) return NULL;
    PyObject *pair = Py_BuildValue("(Ni)", actor, members);
    return pair;
}


/* One struct: a new Event, Py_None to leave it to _finish, NULL on error. */
/* from_json: the struct came from msgspec's JSON decoder; *members then
 * counts the members of its JSON objects, as _finish does for the
 * duplicate-key check, and the payload checks that only matter for Python
 * callers' values are skipped. */
static PyObject *finish_one(PyObject *item, PyObject *const *cx, int from_json,
                            Py_ssize_t *members) {
    PyObject *unset = cx[F_UNSET];
    Py_ssize_t n_members = 10, nested = 0;
    PyObject *out = NULL, *action = NULL, *eid = NULL, *actor_s = NULL, *akey = NULL,
             *target_s = NULL, *ttype = NULL, *tid = NULL, *target = NULL, *context = NULL,
             *ip = NULL, *ip_norm = NULL, *changes_s = NULL, *changes = NULL, *change_dicts = NULL,
             *outcome = NULL, *occurred = NULL, *metadata = NULL, *severity = NULL,
             *payload = NULL, *data = NULL, *tkey = NULL, *aparts[4] = {NULL}, *info = NULL,
             *actor = NULL;
#define GET(var, obj, name) \
    if (!(var = field((obj), (name)))) goto done
#define SLOW goto slow

    GET(action, item, A_action);
    if (action == unset) n_members--;
    if (!PyUnicode_CheckExact(action)) SLOW;
    info = PyDict_GetItemWithError(cx[F_CATALOGUE], action);
    if (!info && !PyErr_Occurred()) info = PyDict_GetItemWithError(cx[F_CUSTOM], action);
    if (!info) {
        if (PyErr_Occurred()) goto done;
        SLOW;
    }
    Py_INCREF(info); /* held: the hooks below run Python */
    GET(eid, item, A_id);
    if (eid == unset) {
        n_members--;
        Py_SETREF(eid, Py_NewRef(Py_None));
    }
    if (eid != Py_None) {
        if (!plain_text(eid) || PyUnicode_FindChar(eid, '/', 0, PyUnicode_GET_LENGTH(eid), 1) != -1)
            SLOW;
        int reserved = PySet_Contains(cx[F_RESERVED], eid);
        if (reserved < 0) goto done;
        if (reserved) SLOW;
    }
    GET(actor_s, item, A_actor);
    n_members -= actor_s == unset;
    if (absent(actor_s, unset)) {
        actor = Py_NewRef(Py_None);
    } else {
        static PyObject **names[4] = {&A_id, &A_type, &A_name, &A_email};
        for (int k = 0; k < 4; k++) GET(aparts[k], actor_s, *names[k]);
        if (!(akey = untrack_tuple(PyTuple_Pack(4, aparts[0], aparts[1], aparts[2], aparts[3]))))
            goto done;
        PyObject *hit = PyDict_GetItemWithError(cx[F_ACTORS], akey);
        if (hit) {
            Py_INCREF(hit);
        } else {
            if (PyErr_Occurred()) goto done;
            if (!(hit = new_actor(cx, aparts))) goto done;
            if (hit == Py_None) {
                Py_DECREF(hit);
                SLOW; /* _actor decides, and caches it for the next time */
            }
            if (cache_put(cx[F_ACTORS], akey, hit, cx[F_CACHE_LIMIT])) {
                Py_DECREF(hit);
                goto done;
            }
        }
        if (!PyTuple_Check(hit) || PyTuple_GET_SIZE(hit) != 2) {
            Py_DECREF(hit);
            SLOW;
        }
        actor = Py_NewRef(PyTuple_GET_ITEM(hit, 0));
        if (actor != Py_None) settle(actor);
        Py_ssize_t an = PyLong_AsSsize_t(PyTuple_GET_ITEM(hit, 1));
        Py_DECREF(hit);
        if (an < 0) {
            if (PyErr_Occurred()) goto done;
            SLOW;
        }
        n_members += an;
    }
    GET(target_s, item, A_target);
    n_members -= target_s == unset;
    if (absent(target_s, unset)) {
        target = Py_NewRef(Py_None);
    } else {
        n_members += 2;
        GET(ttype, target_s, A_type);
        GET(tid, target_s, A_id);
        if (!(tkey = untrack_tuple(PyTuple_Pack(2, ttype, tid)))) goto done;
        target = PyDict_GetItemWithError(cx[F_TARGETS], tkey);
        if (target) {
            Py_INCREF(target);
            settle(target);
        } else {
            if (PyErr_Occurred()) goto done;
            if (!plain_text(ttype) || !plain_text(tid)) SLOW;
            PyObject *d = PyDict_New();
            if (!d || !PUT(d, K_type, ttype) || !PUT(d, K_id, tid)) {
                Py_XDECREF(d);
                goto done;
            }
            if (!(target = frozen(cx[F_TARGET], d, NULL, 0))) goto done;
            if (cache_put(cx[F_TARGETS], tkey, target, cx[F_CACHE_LIMIT])) goto done;
        }
    }
    GET(context, item, A_context);
    n_members -= context == unset;
    if (absent(context, unset)) {
        Py_SETREF(context, PyDict_New());
        if (!context) goto done;
    } else if (!PyDict_CheckExact(context)) {
        SLOW;
    } else if (PyDict_GET_SIZE(context)) {
        ip = Py_XNewRef(PyDict_GetItemWithError(context, K_ip));
        if (!ip && PyErr_Occurred()) goto done;
        if (ip && ip != Py_None) {
            if (!PyUnicode_CheckExact(ip)) SLOW;
            ip_norm = PyObject_CallOneArg(cx[F_NORMAL_IP], ip);
            if (!ip_norm) {
                if (!PyErr_ExceptionMatches(PyExc_ValueError)) goto done;
                PyErr_Clear();
                SLOW;
            }
        }
        PyObject *keys[2] = {K_user_agent, K_request_id};
        for (int k = 0; k < 2; k++) {
            PyObject *v = PyDict_GetItemWithError(context, keys[k]);
            if (!v && PyErr_Occurred()) goto done;
            if (v && v != Py_None && !PyUnicode_CheckExact(v)) SLOW;
        }
    }
    GET(changes_s, item, A_changes);
    n_members -= changes_s == unset;
    if (!(change_dicts = PyList_New(0))) goto done;
    if (absent(changes_s, unset) || (PyList_Check(changes_s) && !PyList_GET_SIZE(changes_s))) {
        changes = PyTuple_New(0);
        if (!changes) goto done;
    } else {
        if (!PyList_Check(changes_s)) SLOW;
        Py_ssize_t n = PyList_GET_SIZE(changes_s);
        if (!(changes = PyTuple_New(n))) goto done;
        for (Py_ssize_t k = 0; k < n; k++) {
            PyObject *c = PyList_GET_ITEM(changes_s, k), *name = NULL, *before = NULL,
                     *after = NULL, *d = NULL, *cd = NULL;
            int ok = (name = PyObject_GetAttr(c, A_field)) && (before = PyObject_GetAttr(c, A_before)) &&
                     (after = PyObject_GetAttr(c, A_after));
            int plain = ok && plain_text(name);
            if (plain) {
                n_members += 3 - (before == unset) - (after == unset);
                nested |= PyDict_Check(before) || PyList_Check(before) || PyDict_Check(after) ||
                          PyList_Check(after);
                if (before == unset) Py_SETREF(before, Py_NewRef(Py_None));
                if (after == unset) Py_SETREF(after, Py_NewRef(Py_None));
                ok = (d = PyDict_New()) && PUT(d, K_field, name) && PUT(d, A_before, before) &&
                     PUT(d, A_after, after) && (cd = PyDict_New()) && PUT(cd, K_field, name) &&
                     PUT(cd, K_from, before) && PUT(cd, K_to, after) &&
                     PyList_Append(change_dicts, cd) == 0;
            }
            Py_XDECREF(name);
            Py_XDECREF(before);
            Py_XDECREF(after);
            Py_XDECREF(cd);
            if (!ok || !plain) {
                Py_XDECREF(d);
                if (!ok) goto done;
                SLOW;
            }
            PyObject *change = frozen(cx[F_CHANGE], d, NULL, 0);
            if (!change) goto done;
            PyTuple_SET_ITEM(changes, k, change);
        }
        untrack_tuple(changes);
    }
    GET(outcome, item, A_outcome);
    n_members -= outcome == unset;
    if (absent(outcome, unset)) Py_SETREF(outcome, Py_NewRef(S_success));
    GET(occurred, item, A_occurred_at);
    n_members -= occurred == unset;
    if (!absent(occurred, unset)) SLOW; /* _timestamp's parsing stays in Python */
    GET(metadata, item, A_metadata);
    n_members -= metadata == unset;
    if (absent(metadata, unset)) {
        Py_SETREF(metadata, PyDict_New());
        if (!metadata) goto done;
    } else if (!PyDict_CheckExact(metadata)) {
        SLOW;
    }
    GET(severity, item, A_severity);
    n_members -= severity == unset;
    if (!absent(severity, unset)) SLOW;
    Py_SETREF(severity, PyObject_GetAttr(info, K_severity));
    if (!severity) goto done;

    /* The payload, encoded with the context as it will be stored. */
    if (ip_norm && PyDict_SetItem(context, K_ip, ip_norm)) goto done;
    if (!(payload = PyDict_New()) || !PUT(payload, K_changes, change_dicts) ||
        !PUT(payload, K_context, context) || !PUT(payload, K_metadata, metadata) ||
        !PUT(payload, K_occurred_at, Py_None))
        goto done;
    data = PyObject_CallOneArg(cx[F_ENCODE], payload);
    if (!data) {
        PyErr_Clear(); /* _finish meets the same refusal and says Slow */
        SLOW;
    }
    if (!PyBytes_CheckExact(data)) SLOW;
    /* What _finish accepts without walking every value: keys that are
     * exact str at the top, ASCII bytes (Python callers' values; JSON gives
     * nothing else), and no object beyond the payload's own three and one
     * per change (so no nested object, and the members are counted). Only
     * a "{" outside strings opens an object: _finish counts every "{" and
     * walks the values of, say, a route "/api/v2/tickets/{id}", to the same
     * result. */
    PyObject *maps[2] = {context, metadata};
    for (int k = 0; k < 2 && !from_json; k++) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(maps[k], &pos, &key, &value))
            if (!PyUnicode_CheckExact(key)) SLOW;
    }
    const char *bytes = PyBytes_AS_STRING(data);
    Py_ssize_t len = PyBytes_GET_SIZE(data), braces = 0;
    int in_string = 0;
    for (Py_ssize_t k = 0; k < len; k++) {
        char c = bytes[k];
        if (!from_json && (unsigned char)c > 0x7f) SLOW;
        if (in_string) {
            if (c == '\\') k++; /* the escaped character: never a string's end */
            else if (c == '"') in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else {
            braces += c == '{';
        }
    }
    if (braces != 3 + PyList_GET_SIZE(change_dicts) || nested) SLOW;
    n_members += PyDict_GET_SIZE(context) + PyDict_GET_SIZE(metadata);
    Py_ssize_t max_payload = PyLong_AsSsize_t(cx[F_MAX_PAYLOAD]);
    if (max_payload < 0 && PyErr_Occurred()) goto done;
    if (len > max_payload) SLOW;

    /* Sized for its twelve keys: from PyDict_New it was resized twice. */
    PyObject *d = _PyDict_NewPresized(12), *ctx_view = NULL, *meta_view = NULL;
    int ok = d && (ctx_view = rmap_wrap(context)) && (meta_view = rmap_wrap(metadata)) &&
             PUT(d, K_id, eid) && PUT(d, K_action, action) && PUT(d, K_info, info) &&
             PUT(d, K_severity, severity) && PUT(d, K_actor, actor) && PUT(d, K_target, target) &&
             PUT(d, K_context, ctx_view) && PUT(d, K_changes, changes) &&
             PUT(d, K_outcome, outcome) && PUT(d, K_occurred_at, Py_None) &&
             PUT(d, K_metadata, meta_view) && PUT(d, K_payload, data);
    Py_XDECREF(ctx_view);
    Py_XDECREF(meta_view);
    if (!ok) {
        Py_XDECREF(d);
        goto done;
    }
    /* Tracked, but no way back to the event: the catalogue's and the
     * Severity enum's constants. (The views are untracked where their dicts
     * hold no container: ReadOnlyMap.) */
    PyObject *safe[2] = {info, severity};
    out = frozen(cx[F_EVENT], d, safe, 2);
    *members = from_json ? n_members : 0;
    goto done;
slow:
    out = Py_NewRef(Py_None);
done:
    Py_XDECREF(action);
    Py_XDECREF(eid);
    Py_XDECREF(actor_s);
    Py_XDECREF(akey);
    for (int k = 0; k < 4; k++) Py_XDECREF(aparts[k]);
    Py_XDECREF(target_s);
    Py_XDECREF(ttype);
    Py_XDECREF(tid);
    Py_XDECREF(tkey);
    Py_XDECREF(target);
    Py_XDECREF(context);
    Py_XDECREF(ip);
    Py_XDECREF(ip_norm);
    Py_XDECREF(changes_s);
    Py_XDECREF(changes);
    Py_XDECREF(change_dicts);
    Py_XDECREF(outcome);
    Py_XDECREF(occurred);
    Py_XDECREF(metadata);
    Py_XDECREF(severity);
    Py_XDECREF(payload);
    Py_XDECREF(data);
    Py_XDECREF(info);
    Py_XDECREF(actor);
    return out;
#undef GET
#undef SLOW
}

PyDoc_STRVAR(finish_doc,
"finish(items, context, from_json) -> list[Event | None] or list[(Event, int) | None]\n\n"
"core.decode._finish for the structs msgspec.convert made without floats:\n"
"per item its Event, or None where _finish must decide. `context` holds\n"
"what _finish uses: (UNSET, CATALOGUE, custom actions, actor cache, target\n"
"cache, reserved ids, normal_ip, encode, MAX_PAYLOAD_BYTES, Event, Target,\n"
"Change, cache limit, Actor, the default actor type). from_json: the structs\n"
"came from msgspec's JSON decoder; each result is then (Event, the members\n"
"of its JSON objects), as _finish returns it.");

static PyObject *finish(PyObject *self, PyObject *args) {
    PyObject *items, *cx;
    int from_json = 0;
    if (!PyArg_ParseTuple(args, "O!O!|p", &PyList_Type, &items, &PyTuple_Type, &cx, &from_json))
        return NULL;
    if (PyTuple_GET_SIZE(cx) != N_FINISH) {
        PyErr_SetString(PyExc_ValueError, "finish: the context has the wrong length");
        return NULL;
    }
    PyObject *const *c = &PyTuple_GET_ITEM(cx, 0);
    if (!PyDict_Check(c[F_CATALOGUE]) || !PyDict_Check(c[F_CUSTOM]) || !PyDict_Check(c[F_ACTORS]) ||
        !PyDict_Check(c[F_TARGETS]) || !PyAnySet_Check(c[F_RESERVED]) || !PyType_Check(c[F_EVENT]) ||
        !PyType_Check(c[F_TARGET]) || !PyType_Check(c[F_CHANGE]) || !PyType_Check(c[F_ACTOR]) ||
        !PyUnicode_Check(c[F_ACTOR_TYPE])) {
        PyErr_SetString(PyExc_TypeError, "finish: a context item of the wrong type");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out && i < n; i++) {
        Py_ssize_t members = 0;
        PyObject *e = finish_one(PyList_GET_ITEM(items, i), c, from_json, &members);
        if (e && from_json && e != Py_None)
            e = untrack_tuple(Py_BuildValue("(Nn)", e, members)); /* steals e */
        if (!e) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, e);
    }
    return out;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Standard base64 with padding, as base64.b64encode. */
static int put_b64(buf_t *b, const unsigned char *s, size_t n) {
    if (buf_reserve(b, (n + 2) / 3 * 4)) return -1;
    unsigned char *o = b->p + b->len;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
        *o++ = (unsigned char)B64[v >> 18];
        *o++ = (unsigned char)B64[v >> 12 & 63];
        *o++ = (unsigned char)B64[v >> 6 & 63];
        *o++ = (unsigned char)B64[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)s[i] << 16 | (i + 1 < n ? (unsigned)s[i + 1] << 8 : 0);
        *o++ = (unsigned char)B64[v >> 18];
        *o++ = (unsigned char)B64[v >> 12 & 63];
        *o++ = i + 1 < n ? (unsigned char)B64[v >> 6 & 63] : '=';
        *o++ = '=';
    }
    b->len = (size_t)(o - b->p);
    return 0;
}

PyDoc_STRVAR(key_colons_doc,
"key_colons(raw) -> (int, bool)\n\n"
"For decode._RawText.no_duplicates: how many times '\":' occurs in `raw`\n"
"(raw.count(b'\":')), and whether a colon follows a space, tab, newline or\n"
"carriage return anywhere (b' :' in raw, and so on), in one pass over the\n"
"colons instead of five over the body.");

/* A batched body's spaces made `b" :" in raw` alone cost 0.3 us per event
 * (every space was a candidate); colons are a few per event. */
static PyObject *key_colons(PyObject *self, PyObject *arg) {
    Py_buffer raw;
    if (PyObject_GetBuffer(arg, &raw, PyBUF_SIMPLE) < 0) return NULL;
    const unsigned char *p = raw.buf, *end = p + raw.len;
    Py_ssize_t quotes = 0;
    int odd = 0;
    for (const unsigned char *c = p; (c = memchr(c, ':', (size_t)(end - c))) != NULL; c++) {
        if (c == p) continue;
        unsigned char before = c[-1];
        if (before == '"')
            quotes++;
        else if (before == ' ' || before == '\t' || before == '\n' || before == '\r')
            odd = 1;
    }
    PyBuffer_Release(&raw);
    return Py_BuildValue("(nO)", quotes, odd ? Py_True : Py_False);
}

PyDoc_STRVAR(receipts_body_doc,
"receipts_body(receipts) -> bytes\n\n"
"The 201 body of POST /v1/events for a list of Receipt tuples (id, seq,\n"
"recorded_at, leaf_hash): the bytes msgspec's encoder makes of\n"
"{\"receipts\": views.receipts_json(receipts)}. ValueError for a receipt\n"
"it cannot write that way (an id that is not valid UTF-8, a time out of\n"
"range): the caller then encodes in Python.");

/* Building a dict per receipt and encoding them was about a microsecond per
 * event of a batched request, on the one core the server's Python runs on;
 * this writes the same bytes in a tenth of that (issue 7). */
static PyObject *receipts_body(PyObject *self, PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "receipts_body() takes a list");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg);
    buf_t b = {0};
    char ts[TS_LEN];
    long long last_at = 0;
    int have_at = 0;
    if (buf_reserve(&b, 16 + (size_t)n * 140) || PUTS(&b, "{\"receipts\":[")) goto nomem;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = PyList_GET_ITEM(arg, i);
        if (!PyTuple_Check(r) || PyTuple_GET_SIZE(r) != 4) goto bad;
        PyObject *id = PyTuple_GET_ITEM(r, 0), *seq = PyTuple_GET_ITEM(r, 1),
                 *at = PyTuple_GET_ITEM(r, 2), *hash = PyTuple_GET_ITEM(r, 3);
        if (!PyUnicode_Check(id) || !PyLong_Check(seq) || !PyLong_Check(at) || !PyBytes_Check(hash))
            goto bad;
        Py_ssize_t id_len;
        const char *id_text = PyUnicode_AsUTF8AndSize(id, &id_len);
        if (!id_text || id_len > INT_MAX) goto bad;
        long long seq_v = PyLong_AsLongLong(seq), at_v = PyLong_AsLongLong(at);
        if (PyErr_Occurred() || seq_v < 0 || at_v < MIN_US || at_v > MAX_US) goto bad;
        if (!have_at || at_v != last_at) {
            format_ts(ts, at_v);
            last_at = at_v;
            have_at = 1;
        }
        if ((i && PUTS(&b, ",")) || PUTS(&b, "{\"id\":") ||
            put_json(&b, (const unsigned char *)id_text, (int)id_len) || PUTS(&b, ",\"seq\":") ||
            put_uint(&b, (uint64_t)seq_v) || PUTS(&b, ",\"recorded_at\":\"") ||
            buf_put(&b, ts, TS_LEN) || PUTS(&b, "\",\"leaf_hash\":\"") ||
            put_b64(&b, (const unsigned char *)PyBytes_AS_STRING(hash),
                    (size_t)PyBytes_GET_SIZE(hash)) ||
            PUTS(&b, "\"}"))
            goto nomem;
    }
    if (PUTS(&b, "]}")) goto nomem;
    PyObject *out = PyBytes_FromStringAndSize((const char *)b.p, (Py_ssize_t)b.len);
    free(b.p);
    return out;
bad:
    free(b.p);
    PyErr_Clear();
    PyErr_SetString(PyExc_ValueError, "receipts_body: a receipt it cannot write");
    return NULL;
nomem:
    free(b.p);
    return PyErr_NoMemory();
}

PyDoc_STRVAR(uuid7_texts_doc,
"uuid7_texts(ms, start, n, rand) -> list[str]\n\n"
"ids.uuid7_texts: n UUIDv7 texts, counter values from `start` within\n"
"millisecond `ms` (carrying into later ones past 0xFFF), 8 bytes of `rand`\n"
"each (its first two bits replaced by the variant).");

static PyObject *uuid7_texts(PyObject *self, PyObject *args) {
    long long ms, start;
    Py_ssize_t n;
    Py_buffer rand;
    if (!PyArg_ParseTuple(args, "LLny*", &ms, &start, &n, &rand)) return NULL;
    if (n < 0 || rand.len != 8 * n || ms < 0 || start < 0) {
        PyBuffer_Release(&rand);
        PyErr_SetString(PyExc_ValueError, "uuid7_texts: bad counts or random bytes");
        return NULL;
    }
    PyObject *out = PyList_New(n);
    const unsigned char *r = rand.buf;
    for (Py_ssize_t i = 0; out && i < n; i++, r += 8) {
        PyObject *u = PyUnicode_New(36, 127);
        if (!u) {
            Py_CLEAR(out);
            break;
        }
        unsigned char *o = PyUnicode_1BYTE_DATA(u);
        long long c = start + i;
        unsigned long long t = (unsigned long long)(ms + (c >> 12));
        for (int k = 0; k < 12; k++) { /* 48-bit time: 8 digits, dash, 4 digits */
            o[k < 8 ? k : k + 1] = (unsigned char)HEX[(t >> (4 * (11 - k))) & 15];
        }
        o[8] = '-';
        o[13] = '-';
        o[14] = '7';
        for (int k = 0; k < 3; k++) o[15 + k] = (unsigned char)HEX[(c >> (4 * (2 - k))) & 15];
        o[18] = '-';
        o[19] = (unsigned char)"89ab"[(r[0] >> 4) & 3];
        o[20] = (unsigned char)HEX[r[0] & 15];
        o[21] = (unsigned char)HEX[r[1] >> 4];
        o[22] = (unsigned char)HEX[r[1] & 15];
        o[23] = '-';
        for (int k = 0; k < 6; k++) {
            o[24 + 2 * k] = (unsigned char)HEX[r[2 + k] >> 4];
            o[25 + 2 * k] = (unsigned char)HEX[r[2 + k] & 15];
        }
        PyList_SET_ITEM(out, i, u);
    }
    PyBuffer_Release(&rand);
    return out;
}

/* --- PostgreSQL appends: rows as binary COPY ----------------------------------
 * psycopg's write_row formats a row through a dumper per value, a few
 * microseconds of interpreter time per ledger row held under the GIL by the
 * writer thread. The types of the ledger's columns are fixed, so the whole
 * COPY (signature, rows, trailer) is written here. */

static int put_be(buf_t *b, uint64_t v, int n) {
    unsigned char tmp[8];
    for (int k = 0; k < n; k++) tmp[k] = (unsigned char)(v >> (8 * (n - 1 - k)));
    return buf_put(b, tmp, (size_t)n);
}

/* One value of type `t` (t text, q int8, i int4, b bool, y bytea); None is
 * NULL. 0 done, -1 a Python error set. */
static int copy_value(buf_t *b, PyObject *v, char t) {
    if (v == Py_None) return put_be(b, 0xffffffffu, 4) ? (PyErr_NoMemory(), -1) : 0;
    const char *p = NULL;
    Py_ssize_t n = 0;
    long long i = 0;
    switch (t) {
        case 't':
            if (!PyUnicode_Check(v)) goto wrong;
            if (!(p = PyUnicode_AsUTF8AndSize(v, &n))) return -1;
            if (memchr(p, 0, (size_t)n)) {
                PyErr_SetString(PyExc_ValueError,
                                "PostgreSQL text fields cannot contain NUL (0x00) bytes");
                return -1;
            }
            break;
        case 'y':
            if (!PyBytes_Check(v)) goto wrong;
            p = PyBytes_AS_STRING(v);
            n = PyBytes_GET_SIZE(v);
            break;
        case 'q':
        case 'i':
        case 'b':
            if (!PyLong_Check(v)) goto wrong; /* bool is an int */
            i = PyLong_AsLongLong(v);
            if (i == -1 && PyErr_Occurred()) return -1;
            if (t == 'i' && (i < INT32_MIN || i > INT32_MAX)) {
                PyErr_SetString(PyExc_OverflowError, "copy_binary: an int4 value out of range");
                return -1;
            }
            if (t == 'b' && i != 0 && i != 1) goto wrong;
            break;
        default:
            PyErr_Format(PyExc_ValueError, "copy_binary: unknown type %c", t);
            return -1;
    }
    int bad;
    if (t == 'q') bad = put_be(b, 8, 4) || put_be(b, (uint64_t)i, 8);
    else if (t == 'i') bad = put_be(b, 4, 4) || put_be(b, (uint64_t)(uint32_t)i, 4);
    else if (t == 'b') bad = put_be(b, 1, 4) || put_be(b, (uint64_t)i, 1);
    else bad = put_be(b, (uint64_t)n, 4) || buf_put(b, p, (size_t)n);
    if (bad) PyErr_NoMemory();
    return bad ? -1 : 0;
wrong:
    PyErr_Format(PyExc_TypeError, "copy_binary: a %s where type %c belongs", Py_TYPE(v)->tp_name,
                 t);
    return -1;
}

PyDoc_STRVAR(copy_binary_doc,
"copy_binary(rows, types, columns) -> bytes\n\n"
"A whole binary COPY (signature, rows, trailer) of `rows` (tuples): the\n"
"values at `columns` (indexes, in order) of each, typed by `types`, one\n"
"letter per column: t text, q int8, i int4, b bool, y bytea. None is NULL.");

static PyObject *copy_binary(PyObject *self, PyObject *args) {
    PyObject *rows, *columns;
    const char *types;
    Py_ssize_t n_types;
    if (!PyArg_ParseTuple(args, "O!s#O!", &PyList_Type, &rows, &types, &n_types, &PyTuple_Type,
                          &columns))
        return NULL;
    Py_ssize_t nc = PyTuple_GET_SIZE(columns);
    if (nc != n_types || nc > 0x7fff) {
        PyErr_SetString(PyExc_ValueError, "copy_binary: one type per column");
        return NULL;
    }
    Py_ssize_t idx[64];
    if (nc > 64) {
        PyErr_SetString(PyExc_ValueError, "copy_binary: at most 64 columns");
        return NULL;
    }
    for (Py_ssize_t c = 0; c < nc; c++) {
        idx[c] = PyLong_AsSsize_t(PyTuple_GET_ITEM(columns, c));
        if (idx[c] < 0) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "copy_binary: bad column");
            return NULL;
        }
    }
    buf_t b = {NULL, 0, 0};
    if (buf_put(&b, COPY_HEADER, sizeof COPY_HEADER)) return PyErr_NoMemory();
    for (Py_ssize_t r = 0; r < PyList_GET_SIZE(rows); r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_Check(row)) {
            PyErr_SetString(PyExc_TypeError, "copy_binary: rows must be tuples");
            goto fail;
        }
        if (put_be(&b, (uint64_t)nc, 2)) {
            PyErr_NoMemory();
            goto fail;
        }
        for (Py_ssize_t c = 0; c < nc; c++) {
            if (idx[c] >= PyTuple_GET_SIZE(row)) {
                PyErr_SetString(PyExc_IndexError, "copy_binary: a column past the row's end");
                goto fail;
            }
            if (copy_value(&b, PyTuple_GET_ITEM(row, idx[c]), types[c])) goto fail;
        }
    }
    if (put_be(&b, 0xffff, 2)) {
        PyErr_NoMemory();
        goto fail;
    }
    PyObject *out = PyBytes_FromStringAndSize((const char *)b.p, (Py_ssize_t)b.len);
    free(b.p);
    return out;
fail:
    free(b.p);
    return NULL;
}

PyDoc_STRVAR(pair_runs_doc,
"pair_runs(runs) -> list\n\n"
"[term, p, term, p, ...] for each (term, [p, ...]) of `runs`, in order: the\n"
"SQLite indexer's postings laid flat for its multi-row inserts.");

static PyObject *pair_runs(PyObject *self, PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "pair_runs: runs must be a list");
        return NULL;
    }
    Py_ssize_t total = 0, nr = PyList_GET_SIZE(arg);
    for (Py_ssize_t k = 0; k < nr; k++) {
        PyObject *run = PyList_GET_ITEM(arg, k);
        if (!PyTuple_Check(run) || PyTuple_GET_SIZE(run) != 2 ||
            !PyList_Check(PyTuple_GET_ITEM(run, 1))) {
            PyErr_SetString(PyExc_TypeError, "pair_runs: runs must be (term, [posting, ...])");
            return NULL;
        }
        total += PyList_GET_SIZE(PyTuple_GET_ITEM(run, 1));
    }
    PyObject *out = PyList_New(2 * total);
    if (!out) return NULL;
    Py_ssize_t at = 0;
    for (Py_ssize_t k = 0; k < nr; k++) {
        PyObject *run = PyList_GET_ITEM(arg, k);
        PyObject *term = PyTuple_GET_ITEM(run, 0), *list = PyTuple_GET_ITEM(run, 1);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
            PyList_SET_ITEM(out, at++, Py_NewRef(term));
            PyList_SET_ITEM(out, at++, Py_NewRef(PyList_GET_ITEM(list, i)));
        }
    }
    return out;
}

PyDoc_STRVAR(copy_postings_doc,
"copy_postings(tenant_id, runs, rows) -> bytes\n\n"
"The binary COPY of search_postings (tenant_id, term, seq, recorded_at) for\n"
"`runs`, a list of (term, seqs) in the order the rows go in: each seq's\n"
"recorded_at is read from `rows`, tuples (seq, recorded_at, ...) in\n"
"ascending seq order. What copy_binary would write for the same postings\n"
"as tuples, without making a tuple per posting.");

/* The index of `seq` among the ascending `seqs`: a batch's seqs are
 * consecutive but for gaps, so the direct guess nearly always holds. */
static Py_ssize_t seq_index(const long long *seqs, Py_ssize_t n, long long seq) {
    long long guess = seq - seqs[0];
    if (guess >= 0 && guess < n && seqs[guess] == seq) return (Py_ssize_t)guess;
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (seqs[mid] < seq) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && seqs[lo] == seq ? lo : -1;
}

static PyObject *copy_postings(PyObject *self, PyObject *args) {
    PyObject *tenant, *runs, *rows;
    if (!PyArg_ParseTuple(args, "UO!O!", &tenant, &PyList_Type, &runs, &PyList_Type, &rows))
        return NULL;
    Py_ssize_t tlen, n = PyList_GET_SIZE(rows);
    const char *t = PyUnicode_AsUTF8AndSize(tenant, &tlen);
    if (!t) return NULL;
    if (memchr(t, 0, (size_t)tlen)) {
        PyErr_SetString(PyExc_ValueError, "PostgreSQL text fields cannot contain NUL (0x00) bytes");
        return NULL;
    }
    long long *seqs = PyMem_Malloc(sizeof(long long) * (size_t)(n ? 2 * n : 1));
    if (!seqs) return PyErr_NoMemory();
    long long *at = seqs + n;
    buf_t b = {NULL, 0, 0};
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) < 2) {
            PyErr_SetString(PyExc_TypeError, "copy_postings: rows must be (seq, recorded_at, ...)");
            goto fail;
        }
        seqs[r] = PyLong_AsLongLong(PyTuple_GET_ITEM(row, 0));
        if (seqs[r] == -1 && PyErr_Occurred()) goto fail;
        at[r] = PyLong_AsLongLong(PyTuple_GET_ITEM(row, 1));
        if (at[r] == -1 && PyErr_Occurred()) goto fail;
        if (r && seqs[r] <= seqs[r - 1]) {
            PyErr_SetString(PyExc_ValueError, "copy_postings: rows out of seq order");
            goto fail;
        }
    }
    if (buf_put(&b, COPY_HEADER, sizeof COPY_HEADER)) goto nomem;
    /* Every posting starts the same: four fields, then the tenant's length. */
    unsigned char head[6] = {0, 4, (unsigned char)(tlen >> 24), (unsigned char)(tlen >> 16),
                             (unsigned char)(tlen >> 8), (unsigned char)tlen};
    const size_t per = sizeof head + (size_t)tlen + 3 * (4 + 8); /* bytes a posting */
    for (Py_ssize_t k = 0; k < PyList_GET_SIZE(runs); k++) {
        PyObject *run = PyList_GET_ITEM(runs, k), *list;
        if (!PyTuple_Check(run) || PyTuple_GET_SIZE(run) != 2 ||
            !PyList_Check(list = PyTuple_GET_ITEM(run, 1))) {
            PyErr_SetString(PyExc_TypeError, "copy_postings: runs must be (term, [seq, ...])");
            goto fail;
        }
        long long term = PyLong_AsLongLong(PyTuple_GET_ITEM(run, 0));
        if (term == -1 && PyErr_Occurred()) goto fail;
        Py_ssize_t len = PyList_GET_SIZE(list);
        if (buf_reserve(&b, per * (size_t)len)) goto nomem;
        for (Py_ssize_t i = 0; i < len; i++) {
            long long seq = PyLong_AsLongLong(PyList_GET_ITEM(list, i));
            if (seq == -1 && PyErr_Occurred()) goto fail;
            Py_ssize_t j = n ? seq_index(seqs, n, seq) : -1;
            if (j < 0) {
                PyErr_Format(PyExc_KeyError, "copy_postings: seq %lld is not among the rows", seq);
                goto fail;
            }
            /* Room was reserved above: these cannot fail. */
            buf_put(&b, head, sizeof head);
            buf_put(&b, t, (size_t)tlen);
            put_be(&b, 8, 4);
            put_be(&b, (uint64_t)term, 8);
            put_be(&b, 8, 4);
            put_be(&b, (uint64_t)seq, 8);
            put_be(&b, 8, 4);
            put_be(&b, (uint64_t)at[j], 8);
        }
    }
    if (put_be(&b, 0xffff, 2)) goto nomem;
    PyMem_Free(seqs);
    PyObject *out = PyBytes_FromStringAndSize((const char *)b.p, (Py_ssize_t)b.len);
    free(b.p);
    return out;
nomem:
    PyErr_NoMemory();
fail:
    PyMem_Free(seqs);
    free(b.p);
    return NULL;
}

PyDoc_STRVAR(plan_rows_doc,
"plan_rows(prepared, leaves, seq0, tenant_id, recorded_at, row_type, receipt_type)\n"
"    -> (rows, receipts)\n\n"
"plan_append's rows and receipts: per Prepared p with leaf hash lh and seq\n"
"(counting from seq0), row_type (tenant_id, seq, p[0], recorded_at,\n"
"*p[1:], lh) and receipt_type (p[0], seq, recorded_at, lh).");

static PyObject *plan_rows(PyObject *self, PyObject *args) {
    PyObject *prepared, *leaves, *tenant, *at, *rtype_o, *ctype_o;
    long long seq0;
    if (!PyArg_ParseTuple(args, "O!O!LUO!O!O!", &PyList_Type, &prepared, &PyList_Type, &leaves,
                          &seq0, &tenant, &PyLong_Type, &at, &PyType_Type, &rtype_o, &PyType_Type,
                          &ctype_o))
        return NULL;
    PyTypeObject *rtype = (PyTypeObject *)rtype_o, *ctype = (PyTypeObject *)ctype_o;
    Py_ssize_t n = PyList_GET_SIZE(prepared);
    if (PyList_GET_SIZE(leaves) != n || !PyType_IsSubtype(rtype, &PyTuple_Type) ||
        !PyType_IsSubtype(ctype, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "plan_rows: lists of different lengths or bad types");
        return NULL;
    }
    PyObject *rows = PyList_New(n), *receipts = PyList_New(n);
    for (Py_ssize_t i = 0; rows && receipts && i < n; i++) {
        PyObject *p = PyList_GET_ITEM(prepared, i), *lh = PyList_GET_ITEM(leaves, i);
        if (!PyTuple_Check(p) || PyTuple_GET_SIZE(p) != N_PREPARED) {
            PyErr_SetString(PyExc_TypeError, "plan_rows: expected Prepared rows");
            goto fail;
        }
        PyObject *seq = PyLong_FromLongLong(seq0 + i);
        if (!seq) goto fail;
        PyObject *row = rtype->tp_alloc(rtype, 4 + N_PREPARED);
        PyObject *rc = ctype->tp_alloc(ctype, 4);
        if (!row || !rc) {
            Py_DECREF(seq);
            Py_XDECREF(row);
            Py_XDECREF(rc);
            goto fail;
        }
        PyTuple_SET_ITEM(row, 0, Py_NewRef(tenant));
        PyTuple_SET_ITEM(row, 1, Py_NewRef(seq));
        PyTuple_SET_ITEM(row, 2, Py_NewRef(PyTuple_GET_ITEM(p, 0)));
        PyTuple_SET_ITEM(row, 3, Py_NewRef(at));
        for (int k = 1; k < N_PREPARED; k++)
            PyTuple_SET_ITEM(row, 3 + k, Py_NewRef(PyTuple_GET_ITEM(p, k)));
        PyTuple_SET_ITEM(row, 3 + N_PREPARED, Py_NewRef(lh));
        PyTuple_SET_ITEM(rc, 0, Py_NewRef(PyTuple_GET_ITEM(p, 0)));
        PyTuple_SET_ITEM(rc, 1, seq); /* the reference taken above */
        PyTuple_SET_ITEM(rc, 2, Py_NewRef(at));
        PyTuple_SET_ITEM(rc, 3, Py_NewRef(lh));
        PyList_SET_ITEM(rows, i, untrack_tuple(row));
        PyList_SET_ITEM(receipts, i, untrack_tuple(rc));
    }
    if (!rows || !receipts) goto fail;
    PyObject *out = PyTuple_Pack(2, rows, receipts);
    Py_DECREF(rows);
    Py_DECREF(receipts);
    return out;
fail:
    /* Items not yet set are NULL, which a list's dealloc skips. */
    Py_XDECREF(rows);
    Py_XDECREF(receipts);
    return NULL;
}

/* ---- project: the search projection of an indexer batch ------------------
 *
 * core.projection's postings_by_term and entry_text for a batch of rows in
 * ProjectionRow's column order, whose first column is whatever the postings
 * hold (a seq on PostgreSQL, a rid on SQLite). The indexer makes both for
 * every entry, and in Python they cost about as much CPU as the appends.
 *
 * A filter like `finish`: a row whose columns are not of the types the
 * writer stores makes the whole call return None (the Python code then
 * raises or copes as it always did), and a document that needs more than
 * ASCII words of strings, exact ints and bools (non-ASCII text, which the
 * Python code normalises; floats; deep nesting; a text over the length
 * limit; a payload JSON cannot decode) comes from the `fallback` callable,
 * the Python entry_text. tests/test_native.py pins both to the Python code.
 */

#define MAX_SEARCH_TEXT 32768 /* core.searchtext.MAX_SEARCH_TEXT */
#define MAX_NEST 64
#define F_ACTION 1 /* core.projection's field numbers */
#define F_ACTOR 2
#define F_TARGET_ID 3
#define F_FAILURE 4
#define F_SECURITY 5
#define F_SEVERITY 6
#define F_IP 7
#define F_TARGET_TYPE 8
enum { P_KEY, P_RECORDED_AT, P_ACTION, P_ACTOR_HASH, P_ACTOR_TYPE, P_TARGET_TYPE, P_TARGET_ID,
       P_OUTCOME, P_SECURITY, P_SEVERITY, P_IP, P_PAYLOAD, N_PROJECTION };

/* search_words' byte table: ASCII letters folded to lower case, digits
 * kept, everything else a word break (0). */
static unsigned char word_byte(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return (unsigned char)(c | 0x20);
    if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return c;
    return 0;
}

typedef struct {
    buf_t b;
    int gap; /* a word break since the last word byte */
} words_t;

/* The words of n ASCII bytes appended: 1, or -1 on a memory error. */
static int put_ascii(words_t *w, const unsigned char *p, Py_ssize_t n) {
    if (buf_reserve(&w->b, (size_t)n + 1)) return -1;
    unsigned char *o = w->b.p + w->b.len;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = word_byte(p[i]);
        if (!c) {
            w->gap = 1;
            continue;
        }
        if (w->gap && o != w->b.p) *o++ = ' ';
        w->gap = 0;
        *o++ = c;
    }
    w->b.len = (size_t)(o - w->b.p);
    w->gap = 1; /* the parts are joined by spaces */
    return 1;
}

#define PUT_LITERAL(w, lit) put_ascii((w), (const unsigned char *)(lit), sizeof(lit) - 1)

/* The words of a str: 1, or 0 to leave the row to Python (not ASCII), -1
 * on a memory error. */
static int put_words(words_t *w, PyObject *s) {
    if (!PyUnicode_IS_ASCII(s)) return 0;
    return put_ascii(w, PyUnicode_1BYTE_DATA(s), PyUnicode_GET_LENGTH(s));
}

/* searchtext._flatten of one value, with the same order and spelling. */
static int put_value(words_t *w, PyObject *v, int depth) {
    if (v == Py_None) return 1;
    if (PyUnicode_CheckExact(v)) return put_words(w, v);
    if (PyLong_CheckExact(v)) {
        PyObject *s = PyObject_Str(v);
        if (!s) { /* over the digit limit: Python says so */
            PyErr_Clear();
            return 0;
        }
        int r = put_words(w, s);
        Py_DECREF(s);
        return r;
    }
    if (PyBool_Check(v)) return v == Py_True ? PUT_LITERAL(w, "true") : PUT_LITERAL(w, "false");
    if (depth >= MAX_NEST) return 0;
    if (PyDict_CheckExact(v)) {
        PyObject *key, *item;
        Py_ssize_t pos = 0;
        while (PyDict_Next(v, &pos, &key, &item)) {
            int r = put_value(w, item, depth + 1);
            if (r != 1) return r;
        }
        return 1;
    }
    if (PyList_CheckExact(v) || PyTuple_CheckExact(v)) {
        PyObject *fast = v; /* lists and tuples share PySequence_Fast's layout */
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
        for (Py_ssize_t i = 0; i < n; i++) {
            int r = put_value(w, PySequence_Fast_GET_ITEM(fast, i), depth + 1);
            if (r != 1) return r;
        }
        return 1;
    }
    return 0; /* floats and anything else: str() and Unicode rules in Python */
}

/* payload.get(key) or {} as entry_text takes it: the values of a dict put
 * in order; 0 for a truthy value that is not a dict. */
static int put_section(words_t *w, PyObject *payload, PyObject *key) {
    PyObject *v = payload ? PyDict_GetItemWithError(payload, key) : NULL;
    if (!v) return PyErr_Occurred() ? -1 : 1;
    if (!PyDict_CheckExact(v)) {
        int t = PyObject_IsTrue(v);
        return t < 0 ? -1 : !t;
    }
    return put_value(w, v, 1);
}

/* entry_text's changes: (str(field), from, to) of each dict in the list. */
static int put_changes(words_t *w, PyObject *payload) {
    PyObject *v = payload ? PyDict_GetItemWithError(payload, K_changes) : NULL;
    if (!v) return PyErr_Occurred() ? -1 : 1;
    if (!PyList_CheckExact(v)) {
        int t = PyObject_IsTrue(v);
        return t < 0 ? -1 : !t;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(v); i++) {
        PyObject *c = PyList_GET_ITEM(v, i);
        if (!PyDict_CheckExact(c)) continue;
        PyObject *part[3] = {K_field, K_from, K_to};
        for (int k = 0; k < 3; k++) {
            PyObject *x = PyDict_GetItemWithError(c, part[k]);
            if (!x && PyErr_Occurred()) return -1;
            int r;
            if (k == 0 && (!x || x == Py_None))
                r = PUT_LITERAL(w, "None"); /* str(c.get("field")) */
            else if (k == 0 && !PyUnicode_CheckExact(x))
                r = 0;
            else
                r = x ? put_value(w, x, 1) : 1;
            if (r != 1) return r;
        }
    }
    return 1;
}

/* The document of one row: a new str, Py_None to leave it to Python, NULL
 * on an error. */
static PyObject *row_text(words_t *w, PyObject *const *col, PyObject *decode) {
    PyObject *payload = NULL;
    w->b.len = 0;
    w->gap = 0;
    if (col[P_PAYLOAD] != Py_None) {
        if (!PyBytes_CheckExact(col[P_PAYLOAD])) return Py_NewRef(Py_None);
        payload = PyObject_CallOneArg(decode, col[P_PAYLOAD]);
        if (!payload) {
            PyErr_Clear(); /* not JSON: the Python code's json.loads decides */
            return Py_NewRef(Py_None);
        }
        if (!PyDict_CheckExact(payload)) Py_CLEAR(payload); /* not an object: no payload */
    }
    /* entry_text's order, which is not the columns' */
    static const int header[] = {P_ACTION, P_TARGET_TYPE, P_TARGET_ID, P_ACTOR_TYPE, P_OUTCOME};
    int r = 1;
    for (size_t k = 0; r == 1 && k < sizeof header / sizeof header[0]; k++)
        r = put_value(w, col[header[k]], 1);
    if (r == 1) r = put_section(w, payload, K_context);
    if (r == 1) r = put_changes(w, payload);
    if (r == 1) r = put_section(w, payload, K_metadata);
    Py_XDECREF(payload);
    if (r < 0) return PyErr_Occurred() ? NULL : PyErr_NoMemory();
    if (r == 0 || w->b.len > MAX_SEARCH_TEXT) return Py_NewRef(Py_None);
    PyObject *s = PyUnicode_New((Py_ssize_t)w->b.len, 127);
    if (s) memcpy(PyUnicode_1BYTE_DATA(s), w->b.p, w->b.len);
    return s;
}

/* groups[(field, value)].append(key), keeping first-seen order. */
static int post(PyObject *groups, PyObject *field, PyObject *value, PyObject *key) {
    PyObject *term = untrack_tuple(PyTuple_Pack(2, field, value));
    if (!term) return -1;
    PyObject *run = PyDict_GetItemWithError(groups, term);
    int rc;
    if (run) {
        rc = PyList_Append(run, key);
    } else if (PyErr_Occurred()) {
        rc = -1;
    } else {
        run = PyList_New(1);
        if (!run) {
            Py_DECREF(term);
            return -1;
        }
        PyList_SET_ITEM(run, 0, Py_NewRef(key));
        rc = PyDict_SetItem(groups, term, run);
        Py_DECREF(run);
    }
    Py_DECREF(term);
    return rc;
}

static int nullable_text(PyObject *o) { return o == Py_None || PyUnicode_CheckExact(o); }

/* entry_terms of one row posted under its key: 1, 0 for a column of an
 * unexpected type, -1 on an error. */
static int post_row(PyObject *groups, PyObject *const *col, PyObject *const *fields,
                    PyObject *one) {
    PyObject *key = col[P_KEY];
    if (!PyUnicode_CheckExact(col[P_ACTION]) || !nullable_text(col[P_ACTOR_HASH]) ||
        !nullable_text(col[P_ACTOR_TYPE]) || !nullable_text(col[P_TARGET_TYPE]) ||
        !nullable_text(col[P_TARGET_ID]) || !PyUnicode_CheckExact(col[P_OUTCOME]) ||
        !PyLong_Check(col[P_SECURITY]) || !PyLong_CheckExact(col[P_SEVERITY]) ||
        !(col[P_IP] == Py_None || PyBytes_CheckExact(col[P_IP])))
        return 0;
    if (post(groups, fields[F_ACTION], col[P_ACTION], key)) return -1;
    if (col[P_ACTOR_HASH] != Py_None && post(groups, fields[F_ACTOR], col[P_ACTOR_HASH], key))
        return -1;
    if (col[P_TARGET_ID] != Py_None && post(groups, fields[F_TARGET_ID], col[P_TARGET_ID], key))
        return -1;
    if (col[P_TARGET_TYPE] != Py_None &&
        post(groups, fields[F_TARGET_TYPE], col[P_TARGET_TYPE], key))
        return -1;
    int ok = PyUnicode_Compare(col[P_OUTCOME], S_success);
    if (ok == -1 && PyErr_Occurred()) return -1;
    if (ok != 0 && post(groups, fields[F_FAILURE], col[P_OUTCOME], key)) return -1;
    int sec = PyObject_IsTrue(col[P_SECURITY]);
    if (sec < 0 || (sec && post(groups, fields[F_SECURITY], one, key))) return -1;
    long sev = PyLong_AsLong(col[P_SEVERITY]);
    if (sev == -1 && PyErr_Occurred()) return -1;
    if (sev > 0) {
        PyObject *s = PyObject_Str(col[P_SEVERITY]);
        int rc = s ? post(groups, fields[F_SEVERITY], s, key) : -1;
        Py_XDECREF(s);
        if (rc) return -1;
    }
    if (col[P_IP] != Py_None) {
        const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(col[P_IP]);
        Py_ssize_t n = PyBytes_GET_SIZE(col[P_IP]);
        PyObject *s = PyUnicode_New(2 * n, 127);
        if (!s) return -1;
        unsigned char *o = PyUnicode_1BYTE_DATA(s);
        for (Py_ssize_t i = 0; i < n; i++) {
            o[2 * i] = (unsigned char)HEX[p[i] >> 4];
            o[2 * i + 1] = (unsigned char)HEX[p[i] & 15];
        }
        int rc = post(groups, fields[F_IP], s, key);
        Py_DECREF(s);
        if (rc) return -1;
    }
    return 1;
}

static PyObject *project(PyObject *self, PyObject *args) {
    PyObject *rows, *decode, *fallback;
    if (!PyArg_ParseTuple(args, "O!OO", &PyList_Type, &rows, &decode, &fallback)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(rows);
    PyObject *fields[F_TARGET_TYPE + 1] = {NULL};
    PyObject *one = PyUnicode_FromString("1");
    PyObject *groups = PyDict_New(), *texts = PyList_New(n), *out = NULL;
    words_t w = {{NULL, 0, 0}, 0};
    if (!one || !groups || !texts) goto done;
    for (int f = F_ACTION; f <= F_TARGET_TYPE; f++)
        if (!(fields[f] = PyLong_FromLong(f))) goto done;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *row = PyList_GET_ITEM(rows, i);
        if (!PyTuple_Check(row) || PyTuple_GET_SIZE(row) != N_PROJECTION) {
            out = Py_NewRef(Py_None);
            goto done;
        }
        PyObject *const *col = &PyTuple_GET_ITEM(row, 0);
        int r = post_row(groups, col, fields, one);
        if (r <= 0) {
            if (r == 0) out = Py_NewRef(Py_None);
            goto done;
        }
        PyObject *text = row_text(&w, col, decode);
        if (text == Py_None) {
            Py_DECREF(text);
            text = PyObject_CallOneArg(fallback, row);
        }
        if (!text) goto done;
        PyList_SET_ITEM(texts, i, text);
    }
    out = PyTuple_Pack(2, groups, texts);
done:
    free(w.b.p);
    for (int f = F_ACTION; f <= F_TARGET_TYPE; f++) Py_XDECREF(fields[f]);
    Py_XDECREF(one);
    Py_XDECREF(groups);
    Py_XDECREF(texts);
    return out;
}

PyDoc_STRVAR(project_doc,
             "project(rows, decode, fallback) -> (groups, texts) or None\n\n"
             "postings_by_term(rows, key=row[0]) and [entry_text(row) ...] of rows in\n"
             "ProjectionRow's column order; None when a column has an unexpected type.\n"
             "`decode` decodes a payload; `fallback(row)` makes the documents this\n"
             "code leaves to Python.");

/* ---- tsvectors: a document's tsvector in PostgreSQL's binary format ------
 *
 * search_words makes an ASCII document out of lower-case letters and digits,
 * one space between words. For such a document, to_tsvector('simple', doc)
 * is each word at its position (1, 2, ...), with one exception found by the
 * differential test: the default parser reads a word that starts like a
 * number in scientific notation ("1e5abc") as two tokens. So the indexer
 * can send the vector in tsvector's binary input format, which the server
 * only checks, instead of the text, which it parses: about 4 µs less server
 * time per entry. A document outside what this covers (other bytes, a
 * scientific-looking word, a long word, more words or more repeats of one
 * than a tsvector keeps positions for) is None, and the server makes its
 * vector as before. tests/test_native.py compares the bytes with the
 * server's tsvector_send(to_tsvector('simple', doc)).
 */

#define TSV_MAX_WORDS 16383 /* positions beyond are clamped by the server */
#define TSV_MAX_REPEATS 255 /* positions kept per lexeme */
#define TSV_MAX_WORD 1024   /* well under the server's 2047-byte limit */

typedef struct {
    const unsigned char *p;
    uint32_t len, pos;
} tsv_word_t;

static int tsv_cmp(const void *a, const void *b) {
    const tsv_word_t *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int sci_start(const unsigned char *p, uint32_t n) {
    uint32_t i = 0;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
    return i > 0 && i + 1 < n && p[i] == 'e' && p[i + 1] >= '0' && p[i + 1] <= '9';
}

/* The binary tsvector of one document, or Py_None. */
static PyObject *tsvector_of(PyObject *text, tsv_word_t **words, size_t *cap) {
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text)) return Py_NewRef(Py_None);
    const unsigned char *p = PyUnicode_1BYTE_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    size_t count = 0;
    for (Py_ssize_t i = 0; i < n;) {
        if (p[i] == ' ' && (i == 0 || p[i - 1] == ' ')) return Py_NewRef(Py_None);
        Py_ssize_t j = i;
        while (j < n && ((p[j] >= 'a' && p[j] <= 'z') || (p[j] >= '0' && p[j] <= '9'))) j++;
        if (j == i || (j < n && p[j] != ' ') || j == n - 1) return Py_NewRef(Py_None);
        if (j - i > TSV_MAX_WORD || sci_start(p + i, (uint32_t)(j - i)) ||
            count == TSV_MAX_WORDS)
            return Py_NewRef(Py_None);
        if (count == *cap) {
            size_t c = *cap ? 2 * *cap : 256;
            tsv_word_t *w = realloc(*words, c * sizeof *w);
            if (!w) return PyErr_NoMemory();
            *words = w;
            *cap = c;
        }
        (*words)[count] = (tsv_word_t){p + i, (uint32_t)(j - i), (uint32_t)(count + 1)};
        count++;
        i = j + 1;
    }
    tsv_word_t *w = *words;
    qsort(w, count, sizeof *w, tsv_cmp);
    buf_t b = {NULL, 0, 0};
    size_t lexemes = 0;
    if (put_be(&b, 0, 4)) goto nomem; /* the count, filled in below */
    for (size_t i = 0; i < count;) {
        size_t j = i + 1;
        while (j < count && w[j].len == w[i].len && !memcmp(w[j].p, w[i].p, w[i].len)) j++;
        if (j - i > TSV_MAX_REPEATS) {
            free(b.p);
            return Py_NewRef(Py_None);
        }
        if (buf_put(&b, w[i].p, w[i].len) || buf_put(&b, "", 1) || put_be(&b, j - i, 2))
            goto nomem;
        for (size_t k = i; k < j; k++)
            if (put_be(&b, w[k].pos, 2)) goto nomem;
        lexemes++;
        i = j;
    }
    for (int k = 0; k < 4; k++) b.p[k] = (unsigned char)(lexemes >> (24 - 8 * k));
    PyObject *out = PyBytes_FromStringAndSize((const char *)b.p, (Py_ssize_t)b.len);
    free(b.p);
    return out;
nomem:
    free(b.p);
    return PyErr_NoMemory();
}

static PyObject *tsvectors(PyObject *self, PyObject *texts) {
    if (!PyList_Check(texts)) {
        PyErr_SetString(PyExc_TypeError, "tsvectors: a list of str");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(texts);
    PyObject *out = PyList_New(n);
    tsv_word_t *words = NULL;
    size_t cap = 0;
    for (Py_ssize_t i = 0; out && i < n; i++) {
        PyObject *v = tsvector_of(PyList_GET_ITEM(texts, i), &words, &cap);
        if (!v) Py_CLEAR(out);
        else PyList_SET_ITEM(out, i, v);
    }
    free(words);
    return out;
}

PyDoc_STRVAR(tsvectors_doc,
             "tsvectors(texts) -> list of bytes or None\n\n"
             "Each document's to_tsvector('simple', text) in tsvector's binary\n"
             "format, or None where the server must make it.");

static PyMethodDef methods[] = {
    {"node_hashes", node_hashes, METH_O, node_hashes_doc},
    {"scan", scan, METH_VARARGS, scan_doc},
    {"scan_copy", scan_copy, METH_VARARGS, scan_copy_doc},
#ifdef HAVE_LIBPQ
    {"scan_pg", scan_pg, METH_VARARGS, scan_pg_doc},
#endif
    {"leaf", leaf, METH_VARARGS, leaf_doc},
    {"prepare", prepare, METH_VARARGS, prepare_doc},
    {"leaf_hashes", leaf_hashes, METH_VARARGS, leaf_hashes_doc},
    {"finish", finish, METH_VARARGS, finish_doc},
    {"uuid7_texts", uuid7_texts, METH_VARARGS, uuid7_texts_doc},
    {"receipts_body", receipts_body, METH_O, receipts_body_doc},
    {"key_colons", key_colons, METH_O, key_colons_doc},
    {"copy_binary", copy_binary, METH_VARARGS, copy_binary_doc},
    {"copy_postings", copy_postings, METH_VARARGS, copy_postings_doc},
    {"pair_runs", pair_runs, METH_O, pair_runs_doc},
    {"plan_rows", plan_rows, METH_VARARGS, plan_rows_doc},
    {"project", project, METH_VARARGS, project_doc},
    {"tsvectors", tsvectors, METH_O, tsvectors_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "kimonaudit._native",
    "Native helpers for the per-event and per-entry loops: verify's row checks, Merkle\n"
    "node hashing, the append path (validation, preparing, planning, both stores'\n"
    "group commits) and the search projection.",
    -1, methods,
};

PyMODINIT_FUNC PyInit__native(void) {
    SHA256_MD = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!SHA256_MD) {
        PyErr_SetString(PyExc_ImportError, "OpenSSL has no SHA-256 implementation");
        return NULL;
    }
#define INTERN(var, text) \
    if (!(var = PyUnicode_InternFromString(text))) return NULL
    INTERN(A_payload, "_payload");
    INTERN(A_actor, "actor");
    INTERN(A_action, "action");
    INTERN(A_info, "info");
    INTERN(A_category, "category");
    INTERN(A_security, "security");
    INTERN(A_target, "target");
    INTERN(A_type, "type");
    INTERN(A_id, "id");
    INTERN(A_severity, "severity");
    INTERN(A_context, "context");
    INTERN(A_outcome, "outcome");
    INTERN(A_occurred_at, "occurred_at");
    INTERN(K_ip, "ip");
    INTERN(A_field, "field");
    INTERN(A_before, "before");
    INTERN(A_after, "after");
    INTERN(A_name, "name");
    INTERN(A_email, "email");
    INTERN(A_metadata, "metadata");
    INTERN(A_changes, "changes");
    INTERN(K_user_agent, "user_agent");
    INTERN(K_request_id, "request_id");
    INTERN(K_changes, "changes");
    INTERN(K_context, "context");
    INTERN(K_metadata, "metadata");
    INTERN(K_occurred_at, "occurred_at");
    INTERN(K_from, "from");
    INTERN(K_to, "to");
    INTERN(K_field, "field");
    INTERN(K_type, "type");
    INTERN(K_id, "id");
    INTERN(K_action, "action");
    INTERN(K_info, "info");
    INTERN(K_severity, "severity");
    INTERN(K_actor, "actor");
    INTERN(K_target, "target");
    INTERN(K_outcome, "outcome");
    INTERN(K_payload, "_payload");
    INTERN(S_success, "success");
#undef INTERN
    if (PyType_Ready(&BatchType) < 0) return NULL;
    if (PyType_Ready(&ReadOnlyMapType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m && PyModule_AddObjectRef(m, "SQLiteBatch", (PyObject *)&BatchType) < 0) Py_CLEAR(m);
    if (m && PyModule_AddObjectRef(m, "ReadOnlyMap", (PyObject *)&ReadOnlyMapType) < 0) Py_CLEAR(m);
#ifdef HAVE_LIBPQ
    if (m && PyType_Ready(&PGBatchType) < 0) Py_CLEAR(m);
    if (m && PyModule_AddObjectRef(m, "PGBatch", (PyObject *)&PGBatchType) < 0) Py_CLEAR(m);
    if (m && !PGBatchError) {
        PGBatchError = PyErr_NewExceptionWithDoc(
            "kimonaudit._native.PGBatchError",
            "A PGBatch step failed: args are (message, sqlstate or None, step index, steps\n"
            "sent).",
            NULL, NULL);
        if (!PGBatchError) Py_CLEAR(m);
    }
    if (m && PyModule_AddObjectRef(m, "PGBatchError", PGBatchError) < 0) Py_CLEAR(m);
#endif
    return m;
}
