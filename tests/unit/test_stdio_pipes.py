"""The stdio transport on event-loop pipes (agent_tools.stdio_pipes), through a real child process with pipes:
messages in and out whole, and a handler's stray print kept off the wire (it goes to stderr)."""

from __future__ import annotations

import json
import subprocess
import sys

from config.paths import REPO_ROOT

ECHO = """
import asyncio
from agent_tools.stdio_pipes import stdio_streams

async def main():
    async with stdio_streams() as (read, write):
        n = 0
        async for msg in read:
            print("stray output of a handler")
            await write.send(msg)
            n += 1
            if n == 2:
                break
        await write.aclose()

asyncio.run(main())
"""


def test_messages_round_trip_and_stray_output_misses_the_wire():
    big = "x" * 200_000  # longer than asyncio's default line limit
    msgs = [{"jsonrpc": "2.0", "id": 1, "method": "ping"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "t", "arguments": {"q": big}}}]
    proc = subprocess.run([sys.executable, "-c", ECHO], input="".join(json.dumps(m) + "\n" for m in msgs),
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert [json.loads(x) for x in lines] == msgs
    assert "stray output of a handler" in proc.stderr
