"""The free-text document is made by one pass over an entry's values joined
by spaces. It must hold exactly the words of each value in turn, as the
per-value definition (`search_words` of each string) gives them: accents,
combining marks, case folding and punctuation included."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kimonaudit.core.searchtext import _WORD, MAX_SEARCH_TEXT, _flatten, search_text, search_words


def _per_value(**kw: Any) -> str:
    parts: list[str] = []
    _flatten(
        (kw["action"], kw["target_type"], kw["target_id"], kw["actor_type"], kw["outcome"]), parts
    )
    _flatten(kw["context"].values(), parts)
    for field, before, after in kw["changes"]:
        _flatten((field, before, after), parts)
    _flatten(kw["metadata"].values(), parts)
    words = [" ".join(search_words(p)) for p in parts]
    text = " ".join(w for w in words if w)
    if len(text) > MAX_SEARCH_TEXT:
        cut = text.rfind(" ", 0, MAX_SEARCH_TEXT + 1)
        text = text[: cut if cut > 0 else MAX_SEARCH_TEXT]
    return text


_TEXT = st.text(max_size=30) | st.sampled_from(
    ["é", "\u0301a", "a\u0301", "ß", "İ", "ﬁ", "x\u0327\u0301", "\u0301", "Ä", "agent_42", "a-b.c"]
)
_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=500)
@given(
    action=_TEXT,
    target_type=st.none() | _TEXT,
    target_id=st.none() | _TEXT,
    actor_type=st.none() | _TEXT,
    outcome=_TEXT,
    context=st.dictionaries(_TEXT, _VALUE, max_size=4),
    changes=st.lists(st.tuples(_TEXT, _VALUE, _VALUE), max_size=3),
    metadata=st.dictionaries(_TEXT, _VALUE, max_size=4),
)
def test_document_is_the_words_of_each_value_in_turn(**kw: Any) -> None:
    assert search_text(**kw) == _per_value(**kw)


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=40))
def test_ascii_words_are_the_expressions(text: str) -> None:
    assert search_words(text) == _WORD.findall(text.casefold())


def test_a_long_document_is_cut_at_a_word() -> None:
    text = search_text(
        action="ticket.viewed",
        target_type=None,
        target_id=None,
        actor_type=None,
        outcome="success",
        context={"note": "word " * 20_000},
        changes=[],
        metadata={},
    )
    assert len(text) <= MAX_SEARCH_TEXT and text.endswith("word") and "  " not in text
