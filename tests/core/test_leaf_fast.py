"""The template leaf encoder must produce exactly the RFC 8785 bytes."""

from __future__ import annotations

from hypothesis import given, settings

from kimonaudit.core.leaf import (
    encode_leaf,
    leaf_fields,
    leaf_from_template,
    leaf_header,
    leaf_template,
)
from tests.core.leaf_strategies import LEAF_FIELDS


@settings(max_examples=400, deadline=None)
@given(**LEAF_FIELDS)
def test_fast_leaf_equals_canonical_leaf(
    tenant,
    seq,
    ts,
    eid,
    action,
    category,
    sev,
    security,
    ahash,
    atype,
    ttype,
    tid,
    outcome,
    commitment,
):
    """leaf_fields == encode_leaf(leaf_header(...)) for arbitrary field values."""
    fast = leaf_fields(
        tenant,
        seq,
        ts,
        eid,
        action,
        category,
        int(sev),
        security,
        ahash,
        atype,
        ttype,
        tid,
        outcome,
        commitment,
    )
    slow = encode_leaf(
        leaf_header(
            tenant_id=tenant,
            seq=seq,
            recorded_at_us=ts,
            event_id=eid,
            action=action,
            category=category,
            severity=sev,
            security=security,
            actor_hash=ahash,
            actor_type=atype,
            target_type=ttype,
            target_id=tid,
            outcome=outcome,
            commitment=commitment,
        )
    )
    assert fast == slow
    # The append path's per-batch template (tenant and time filled in once;
    # '%' in a tenant id must not break it) gives the same bytes too.
    batch = leaf_from_template(
        leaf_template(tenant, ts),
        seq,
        eid,
        action,
        category,
        int(sev),
        security,
        ahash,
        atype,
        ttype,
        tid,
        outcome,
        commitment,
    )
    assert batch == slow
