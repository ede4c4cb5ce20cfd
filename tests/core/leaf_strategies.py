"""The inputs of one Merkle leaf, as validation lets them through, shared by
the tests that pin the fast leaf encoders to the canonical one."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from kimonaudit.core.catalogue import Severity
from kimonaudit.core.timefmt import MAX_US, MIN_US

# Any Unicode scalar value (no surrogates).
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
maybe = st.none() | text

#: Keyword strategies for @given: every field of a leaf.
LEAF_FIELDS: dict[str, Any] = {
    "tenant": text,
    "seq": st.integers(0, 2**53 - 1),
    "ts": st.integers(MIN_US, MAX_US),
    "eid": maybe,
    "action": text,
    "category": text,
    "sev": st.sampled_from(list(Severity)),
    "security": st.booleans(),
    "ahash": maybe,
    "atype": maybe,
    "ttype": maybe,
    "tid": maybe,
    "outcome": text,
    "commitment": st.binary(min_size=32, max_size=32),
}
