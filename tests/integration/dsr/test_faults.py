"""Bad input and faults of `kredete dsr erase`: each is refused before any change, or leaves a resumable partial
state that is never reported as done.

- an unknown user, a reason without a ticket, a staff subject, a user under legal hold: exit 2, nothing changed;
- Redis stopped for real before the erasure reaches it: exit 3, the request is `failed` at `redis`, the data key
  still exists (nothing reported erased); Redis back, the same command completes it;
- the erasure process killed (SIGKILL) after the PostgreSQL step: the request stays open; the rerun completes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

from tests.integration.dsr.conftest import KREDETE, REASON, run_cli


def _start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """The command in a process group of its own (killed whole with SIGKILL)."""
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


async def _pii_present(svc, user: str) -> bool:
    async with svc.postgres.connection() as conn:
        return await conn.fetchval("SELECT email_enc IS NOT NULL FROM users WHERE id = $1", uuid.UUID(user))


async def test_unknown_user_is_refused(dsr_data):
    res = run_cli(dsr_data.env, "dsr", "erase", "--user", str(uuid.uuid4()), "--reason", REASON)
    assert res.returncode == 2
    assert "unknown user" in res.stderr


async def test_a_reason_without_a_ticket_is_refused(dsr_data, privacy):
    user = dsr_data.without_documents[-1]
    for reason in ("customer asked us to delete everything", "DSR-1234", "DSR-1234: ok"):
        res = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", reason)
        assert res.returncode == 2, reason
        assert "ticket reference" in res.stderr or "purpose" in res.stderr
    assert await _pii_present(privacy, user)
    assert await privacy.repo.last_erasure(uuid.UUID(user)) is None


async def test_a_staff_subject_is_refused(dsr_data):
    res = run_cli(dsr_data.env, "dsr", "erase", "--user", "coach-1", "--reason", REASON)
    assert res.returncode == 2
    assert "staff subject" in res.stderr and "credit_coach" in res.stderr
    res = run_cli(dsr_data.env, "dsr", "erase", "--user", "nobody-at-all", "--reason", REASON)
    assert res.returncode == 2 and "not a user id" in res.stderr


async def test_a_user_under_legal_hold_is_refused_until_released(dsr_data, privacy):
    user, other = dsr_data.without_documents[-2], dsr_data.without_documents[-3]
    held = run_cli(dsr_data.env, "dsr", "hold", "--user", user, "--reason", "LEGAL-778: litigation hold, case 2026/41")
    assert held.returncode == 0, held.stderr
    res = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", REASON)
    assert res.returncode == 2 and "legal hold" in res.stderr
    assert await _pii_present(privacy, user)
    assert await privacy.repo.last_erasure(uuid.UUID(user)) is None
    # a batch containing a held user is refused whole
    batch = run_cli(dsr_data.env, "dsr", "erase", "--user", other, "--user", user,
                    "--reason", REASON)
    assert batch.returncode == 2 and await _pii_present(privacy, other)
    released = run_cli(dsr_data.env, "dsr", "release", "--user", user, "--reason",
                       "LEGAL-778: case closed, hold lifted")
    assert released.returncode == 0, released.stderr
    done = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", REASON)
    assert done.returncode == 0, done.stderr
    assert not await _pii_present(privacy, user)


async def test_a_store_down_mid_erase_leaves_a_resumable_state(dsr_data, privacy, session_stack):
    from kredete import stack as local_stack

    user = dsr_data.with_documents[1]
    local_stack.down(["redis"])
    try:
        res = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", REASON)
    finally:
        local_stack.up(["redis"])
    assert res.returncode == 3, res.stdout + res.stderr
    said = " ".join(res.stderr.split())  # the console wraps long lines
    assert "stopped at step 'redis'" in said and "run the same command again" in said
    req = await privacy.repo.last_erasure(uuid.UUID(user))
    assert req.status == "failed"
    assert {k for k, v in req.steps.items() if v["status"] == "done"} == {"capture", "postgres", "credit_store"}
    assert req.steps["redis"]["status"] == "failed"
    assert privacy.keys.get([user])  # the key is not destroyed: nothing is reported erased
    status = run_cli(dsr_data.env, "dsr", "status", "--user", user)
    assert "failed" in status.stdout and "redis" in status.stdout

    again = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", REASON, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["status"] == "erased"
    assert "done capture" not in again.stderr and "done redis" in again.stderr  # continued, not restarted
    assert (await privacy.verify(user)).passed


async def test_killed_midway_then_rerun_completes(dsr_data, privacy):
    user = dsr_data.with_documents[2]
    env = {**dsr_data.env, "KREDETE_DSR_STEP_PAUSE_S": "3"}
    proc = _start([KREDETE, "dsr", "erase", "--user", user, "--reason", REASON], env)
    seen = ""
    deadline = time.monotonic() + 120
    try:
        while "done postgres" not in seen and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            seen += line
        assert "done postgres" in seen, seen
        os.killpg(proc.pid, signal.SIGKILL)  # during the pause after the PostgreSQL step
    finally:
        proc.wait(timeout=30)
    req = await privacy.repo.last_erasure(uuid.UUID(user))
    assert req.status == "running"  # never reported done
    assert {"capture", "postgres"} <= {k for k, v in req.steps.items() if v["status"] == "done"}
    assert "key" not in req.steps and privacy.keys.get([user])

    again = run_cli(dsr_data.env, "dsr", "erase", "--user", user, "--reason", REASON, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)[0]["status"] == "erased"
    assert "done postgres" not in again.stderr
    assert (await privacy.repo.last_erasure(uuid.UUID(user))).status == "done"
    assert (await privacy.verify(user)).passed
