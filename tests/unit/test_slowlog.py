"""The slow-statement log parser: entries with their request id, bound parameters never read."""

from __future__ import annotations

from kredete.ops.slowlog import slow_entries

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
