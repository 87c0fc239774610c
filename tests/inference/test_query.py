"""Query parsing: separators, normalisation, duplicates and limits."""
import pytest

from synseg_core.inference.query import QueryError, QueryLimits, parse_query


@pytest.mark.parametrize("text, expected", [
    ("person, chair, table", ["person", "chair", "table"]),
    ("person;chair\ntable", ["person", "chair", "table"]),
    ("  person ,\r\n chair ;; ,", ["person", "chair"]),
    ("open   door,\topen door", ["open door"]),
    ("Person, person, PERSON, chair", ["Person", "chair"]),
    ("single", ["single"]),
])
def test_parse_query_splits_strips_and_deduplicates(text, expected):
    assert parse_query(text) == expected


@pytest.mark.parametrize("text", ["", "   ", ",;\n", " , , "])
def test_empty_query_is_rejected(text):
    with pytest.raises(QueryError, match="holds no category"):
        parse_query(text)


def test_too_many_categories_names_count_and_limit():
    limits = QueryLimits(max_categories=3)
    assert parse_query("a, b, c", limits) == ["a", "b", "c"]
    # Duplicates do not count against the limit.
    assert parse_query("a, b, c, a, B", limits) == ["a", "b", "c"]
    with pytest.raises(QueryError, match="4 categories; at most 3"):
        parse_query("a, b, c, d", limits)


def test_too_long_category_names_length_and_limit():
    limits = QueryLimits(max_length=5)
    assert parse_query("chair", limits) == ["chair"]
    with pytest.raises(QueryError, match="6 characters long; at most 5"):
        parse_query("chair, tables", limits)


def test_non_string_query_is_rejected():
    with pytest.raises(QueryError, match="must be a string"):
        parse_query(["person"])  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["max_categories", "max_length"])
@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_invalid_limits_are_rejected(field, value):
    with pytest.raises(QueryError, match=field):
        QueryLimits(**{field: value})
