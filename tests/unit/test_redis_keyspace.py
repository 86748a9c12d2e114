"""Counting a Redis snapshot's keys from `INFO`: all keys, and those with a TTL (which may expire before a
restore is checked)."""

from kredete.drills.redis_snapshots import _keyspace


def test_keys_and_keys_with_a_ttl_are_summed_over_databases():
    info = ("# Persistence\r\nloading:0\r\n# Keyspace\r\ndb0:keys=32,expires=2,avg_ttl=41000,subexpiry=0\r\n"
            "db3:keys=5,expires=0,avg_ttl=0,subexpiry=0\r\n")
    assert _keyspace(info) == (37, 2)


def test_an_empty_keyspace_counts_nothing():
    assert _keyspace("# Keyspace\r\n") == (0, 0)
