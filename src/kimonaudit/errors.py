"""One error tree for the whole package.

Adapters translate these at the edge: the CLI turns them into a one-line
message and an exit code, the HTTP API into one JSON error shape.

    AuditLogError
    ├── InvalidInput            bad input from outside; `field` names where
    │   ├── InvalidEvent        an event that fails validation
    │   ├── InvalidQuery        a search query that does not parse
    │   └── CanonicalError      a value RFC 8785 cannot encode
    ├── NotFound                tenant, entry, key ... does not exist
    ├── Conflict                the request contradicts stored state
    ├── AuthError               missing or wrong credentials
    │   └── Forbidden           credentials lack the scope
    ├── VerificationError       integrity checks failed
    │   ├── InvalidProof        a Merkle proof does not verify
    │   ├── InvalidSignature    a signed note does not verify
    │   └── MalformedNote       a checkpoint or note that does not parse
    ├── StoreError              the database failed or is inconsistent
    └── ConfigError             bad settings, unreadable key file ...
"""

from __future__ import annotations


class AuditLogError(Exception):
    """Root of every error KimonAudit raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(AuditLogError):
    """Input from outside is wrong. `field` is a dotted path such as
    ``events[3].actor.id`` (empty when the input as a whole is wrong)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.reason = message


class InvalidEvent(InvalidInput):
    pass


class InvalidQuery(InvalidInput):
    """`position` is the 0-based character offset of the problem, if known."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message, field="q")
        self.position = position


class CanonicalError(InvalidInput):
    pass


class NotFound(AuditLogError):
    pass


class Conflict(AuditLogError):
    """The request contradicts what is stored (an id already taken by other
    content). `field` names the input that conflicts, when one does."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class AuthError(AuditLogError):
    pass


class Forbidden(AuthError):
    pass


class VerificationError(AuditLogError):
    pass


class InvalidProof(VerificationError):
    pass


class InvalidSignature(VerificationError):
    pass


class MalformedNote(VerificationError):
    pass


class StoreError(AuditLogError):
    pass


class ConfigError(AuditLogError):
    pass
