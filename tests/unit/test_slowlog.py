"""The slow-statement log parser: entries with their request id, bound parameters never read."""

from __future__ import annotations

from kredete.ops.slowlog import SlowEntry, attribute, slow_entries

LOG = "\n".join([
    "2026-12-06 09:28:39.698 UTC [31290] app=kredete:4f1c2ab9 kredete_agent_ro@kredete_e2e LOG:  duration: "
    "612.345 ms  execute <unnamed>: SELECT t.id FROM transactions t WHERE t.id = $1",
    "2026-12-06 09:28:39.698 UTC [31290] app=kredete:4f1c2ab9 kredete_agent_ro@kredete_e2e DETAIL:  parameters: "
    "$1 = 'Ada Lovelace'",
    "2026-12-06 09:28:40.100 UTC [31291] app=kredete kredete@kredete LOG:  duration: 501.0 ms  statement: "
    "SELECT pg_sleep(0.5)",
    "2026-12-06 09:28:41.000 UTC [31292] app=psql kredete@postgres LOG:  checkpoint starting: time",
]) + "\n"


def test_entries_carry_the_request_id_and_never_the_parameters(tmp_path):
    path = tmp_path / "server.log"
    path.write_text(LOG)
    found = slow_entries(path)
    assert [(e.duration_ms, e.request_id, e.who) for e in found] == [
        (612.345, "4f1c2ab9", "kredete_agent_ro@kredete_e2e"), (501.0, None, "kredete@kredete")]
    assert "Ada" not in str([e.model_dump() for e in found])
    assert [e.statement for e in slow_entries(path, request_id="4f1c2ab9")] == [
        "SELECT t.id FROM transactions t WHERE t.id = $1"]
    assert slow_entries(tmp_path / "missing.log") == []


def _entry(at: str, pid: int, server: str = "postgres-replica") -> SlowEntry:
    return SlowEntry(server=server, at=at, duration_ms=1.0, application="kredete", request_id=None,
                     who="kredete_agent_ro@kredete_e2e", statement="SELECT 1", pid=pid)


def test_an_entry_is_the_call_whose_recorded_session_held_it():
    base = _entry("2026-12-06 09:28:39.698 UTC", 1).epoch_ms()
    assert base == 1796549319698  # PostgreSQL's %m, in epoch milliseconds
    calls = [("rid-a", [{"server": "127.0.0.1:20433", "pid": 7, "from": base - 5, "to": base + 1},
                        {"server": "127.0.0.1:20432", "pid": 9, "from": base + 2, "to": base + 9}]),
             ("rid-b", [{"server": "127.0.0.1:20433", "pid": 7, "from": base + 1, "to": base + 20}])]
    found = [_entry("2026-12-06 09:28:39.698 UTC", 7),  # inside rid-a's window on the replica
             _entry("2026-12-06 09:28:39.699 UTC", 7),  # both windows (same millisecond): the later call
             _entry("2026-12-06 09:28:39.710 UTC", 7),  # rid-b only
             _entry("2026-12-06 09:28:39.730 UTC", 7),  # after every window: no call
             _entry("2026-12-06 09:28:39.698 UTC", 8),  # another pid
             _entry("2026-12-06 09:28:39.703 UTC", 7, server="postgres"),  # pid 7 on another server
             _entry("2026-12-06 09:28:39.703 UTC", 9, server="postgres")]
    named = _entry("2026-12-06 09:28:39.698 UTC", 7)
    named.request_id = "tagged"  # a session named for its call keeps that name
    attribute([*found, named], calls, {"postgres": 20432, "postgres-replica": 20433})
    assert [e.request_id for e in found] == ["rid-a", "rid-b", "rid-b", None, None, None, "rid-a"]
    assert named.request_id == "tagged"
