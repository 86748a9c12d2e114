"""`evals.listening.listening_process`, the start-and-wait of every server `evals/` and `bench/` run: real
processes on a free port."""

from __future__ import annotations

import socket
import sys

import pytest

from config.ports import free_port
from evals.listening import listening_process


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_yields_once_the_server_listens_and_stops_it_on_leaving(tmp_path):
    port = free_port()
    # the server sleeps before it binds: a helper that yielded at once would find the port closed
    serve = f"import time, http.server as h; time.sleep(1); h.HTTPServer(('127.0.0.1', {port}), " \
            "h.SimpleHTTPRequestHandler).serve_forever()"
    with listening_process([sys.executable, "-c", serve], port=port, env={}, log_path=tmp_path / "s.log",
                           what="scratch server", timeout_s=30) as proc:
        assert _accepts(port)
        assert proc.poll() is None
    assert proc.returncode is not None, "the server outlived the block"
    assert not _accepts(port)


def test_a_server_that_exits_is_reported_with_the_end_of_its_log(tmp_path):
    crash = "import sys; print('bad config: KREDETE_X'); sys.exit(3)"
    with pytest.raises(RuntimeError, match=r"(?s)scratch server exited \(3\).*bad config: KREDETE_X"), \
            listening_process([sys.executable, "-c", crash], port=free_port(), env={},
                              log_path=tmp_path / "logs" / "c.log", what="scratch server", timeout_s=30):
        pytest.fail("yielded without a listener")


def test_a_server_that_never_listens_times_out_with_the_end_of_its_log(tmp_path):
    port = free_port()
    silent = "import time; print('starting', flush=True); time.sleep(60)"
    with pytest.raises(RuntimeError, match=rf"(?s)did not listen on {port} within 1s.*starting"), \
            listening_process([sys.executable, "-c", silent], port=port, env={}, log_path=tmp_path / "n.log",
                              what="scratch server", timeout_s=1):
        pytest.fail("yielded without a listener")
