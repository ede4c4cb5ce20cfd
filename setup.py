"""The optional C extension; everything else about the package is in
pyproject.toml. `kimonaudit._native` (src/kimonaudit/_native.c) is verify's
SQLite row scan and the Merkle tree's node hashing. optional=True: without a
compiler or the SQLite and OpenSSL headers the install goes on, and the
pure-Python code does the same work (verify about three times slower)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "kimonaudit._native",
            sources=["src/kimonaudit/_native.c"],
            libraries=["sqlite3", "crypto"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
