"""Redis 7 with AOF persistence and ACL users, from Debian's `redis-server`."""

from __future__ import annotations

import os
import shutil

from config import ports
from config.secrets import local_secrets
from kredete.stack.base import Server, StackError, port_open, run


def _binary() -> str:
    found = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server")
                                             else None)
    if not found:
        raise StackError("redis-server is not installed: run `kredete stack up` (installs Debian's redis-server)")
    return found


class RedisServer(Server):
    name = "redis"
    port = ports.REDIS

    def provision(self) -> None:
        if not shutil.which("redis-server"):
            run(["apt-get", "update", "-qq"], timeout=600)
            run(["apt-get", "install", "-y", "-qq", "redis-server", "redis-tools"], timeout=900,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})

    def version(self) -> str:
        out = run([_binary(), "--version"])
        return "Redis " + out.split("v=")[1].split()[0]

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        s = local_secrets()
        conf = self.data_dir / "redis.conf"
        # Rewritten on every start so ports and passwords follow the current settings.
        conf.write_text(
            f"bind 127.0.0.1\nport {self.port}\nprotected-mode yes\ndaemonize no\n"
            f"dir {self.data_dir}\n"
            "appendonly yes\nappendfsync everysec\nappenddirname appendonly\n"
            "save 900 1\nsave 300 100\n"
            "maxmemory 512mb\nmaxmemory-policy volatile-lru\n"
            "notify-keyspace-events Ex\n"
            # The service user may do anything but administer the server; the agent user may only read
            # the cache, feature flags and leaderboards and write its own rate-limit counters.
            "user default off\n"
            f"user kredete on >{s['redis_default']} ~* &* +@all -@admin -@dangerous +info +flushdb +config|get\n"
            f"user agent on >{s['redis_agent']} ~cache:* ~ff:* ~lb:* ~qemb:* ~rl:* &inval:* "
            "-@all +@read +@connection +zadd +zremrangebyscore +expire +pexpire +multi +exec +eval +evalsha "
            "+script|load +setex +set\n"
            # Backups (kredete backup redis): may only stream an RDB snapshot (redis-cli --rdb) and ask when
            # the last one was saved; no key access.
            f"user backup on >{s['redis_backup']} -@all +ping +info +lastsave +replconf +sync +psync\n"
        )
        os.chmod(conf, 0o600)

    def binary_name(self) -> str:
        return "redis-server"

    def command(self) -> tuple[list[str], dict[str, str]]:
        return [_binary(), str(self.data_dir / "redis.conf")], {}

    def url(self) -> str:
        return f"redis://kredete:{local_secrets()['redis_default']}@127.0.0.1:{self.port}/0"

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        try:
            out = run(["redis-cli", "-p", str(self.port), "--user", "kredete", "--pass",
                       local_secrets()["redis_default"], "--no-auth-warning", "PING"], timeout=5)
        except StackError:
            return False
        return out.strip() == "PONG"
