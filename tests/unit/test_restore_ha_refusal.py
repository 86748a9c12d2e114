"""`kredete restore` in the HA profile is refused with what to do instead, before anything is read or written."""

from __future__ import annotations

import pytest

from config.errors import StackError
from config.settings import reset_settings


def test_restore_in_the_ha_profile_is_refused(monkeypatch, tmp_path):
    from kredete.drills.restore import restore

    monkeypatch.setenv("KREDETE_STACK_PROFILE", "ha")
    monkeypatch.setenv("KREDETE_LOCAL_DIR", str(tmp_path))
    reset_settings()
    try:
        with pytest.raises(StackError, match="Patroni cluster is restored by bootstrapping"):
            restore("latest", target_dir=tmp_path / "restored")
        assert not (tmp_path / "restored").exists()
    finally:
        monkeypatch.undo()
        reset_settings()
