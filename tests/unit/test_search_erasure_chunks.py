"""How many users one erasure query of an index may name: under OpenSearch's clause limit, as many as fit."""

from stores.search.erasure import MAX_CLAUSES, _leaves, _query, users_per_query


def _clauses(query: dict, fields: int) -> int:
    """Clauses of an erasure query once OpenSearch expands `fields: ["*"]` to `fields` fields."""
    n = 0
    for clause in query["bool"]["should"]:
        n += fields if "multi_match" in clause else 1
    return n


def test_leaves_counts_object_sub_fields_and_multi_fields():
    props = {"user_id": {"type": "keyword"},
             "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
             "subject": {"properties": {"city": {"type": "text"}, "zip": {"type": "keyword"}}}}
    assert _leaves(props) == 5


def test_a_query_of_a_full_chunk_stays_under_the_clause_limit():
    keywords, flats, fields = ["user_id", "a", "b", "c"], ["meta"], 40
    size = users_per_query(fields, len(keywords), len(flats))
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(size)]
    assert _clauses(_query(ids, keywords, flats), fields) <= MAX_CLAUSES
    # one user more would pass it: the chunk is as large as the limit allows
    assert _clauses(_query([*ids, "x"], keywords, flats), fields) > MAX_CLAUSES - fields


def test_an_index_with_more_fields_than_the_limit_still_takes_one_user_per_query():
    assert users_per_query(5000, 10, 0) == 1
    assert users_per_query(0, 0, 0) == MAX_CLAUSES
