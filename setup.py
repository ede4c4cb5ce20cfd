"""The optional C extension; everything else about the package is in
pyproject.toml. `kimonaudit._native` (src/kimonaudit/_native.c) is verify's
row scan on both stores and the Merkle tree's node hashing. optional=True:
without a compiler or the SQLite and OpenSSL headers the install goes on,
and the pure-Python code does the same work (verify about three times
slower). With libpq's headers too (Debian's libpq-dev) it also reads
PostgreSQL's rows itself (`scan_pg`) and writes PostgreSQL's appends
(`PGBatch`); without them both go through psycopg."""

import shutil
import subprocess
from pathlib import Path

from setuptools import Extension, setup


def _libpq_include() -> str | None:
    """libpq's header folder, from pg_config or Debian's usual place."""
    if shutil.which("pg_config"):
        try:
            out = subprocess.run(
                ["pg_config", "--includedir"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            out = ""
        if out and Path(out, "libpq-fe.h").is_file():
            return out
    fallback = Path("/usr/include/postgresql")
    return str(fallback) if (fallback / "libpq-fe.h").is_file() else None


libraries = ["sqlite3", "crypto"]
include_dirs: list[str] = []
define_macros: list[tuple[str, str | None]] = []
pq = _libpq_include()
if pq is not None:
    libraries.append("pq")
    include_dirs.append(pq)
    define_macros.append(("HAVE_LIBPQ", None))

setup(
    ext_modules=[
        Extension(
            "kimonaudit._native",
            sources=["src/kimonaudit/_native.c"],
            libraries=libraries,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
