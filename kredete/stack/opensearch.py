"""OpenSearch 3.x with the k-NN plugin, assembled from Maven Central (no tarball, no Docker).

OpenSearch's tarball only comes from artifacts.opensearch.org, which is out of reach here, but
everything a node is made of is on Maven Central:

* `org.opensearch:opensearch` (the server) and its dependencies -> `lib/`
* `org.opensearch:opensearch-agent` (the 3.x replacement of the security manager) -> `agent/`
* the standard modules, published as jars under `org.opensearch.plugin` -> `modules/<name>/`
  (each gets the `plugin-descriptor.properties` and `plugin-security.policy` the distribution
  would have; the jars that are already in `lib/` are left out, as the distribution does)
* the k-NN plugin zip `org.opensearch.plugin:opensearch-knn:<v>:zip` -> `plugins/opensearch-knn/`
  (it extends `lang-painless` and `transport-grpc`, both assembled as modules)
* the S3 snapshot repository `org.opensearch.plugin:repository-s3` (a jar whose pom lists exactly the jars
  of the distribution's plugin zip) -> `plugins/repository-s3/`, with the descriptor and the grants the
  zip would carry
* the keystore tool `org.opensearch:keystore-cli` -> `lib/tools/keystore-cli/` (the S3 client's keys go
  into the node's keystore, never into opensearch.yml or a command line)

One Maven reactor build (one `mvn dependency:list` over a generated multi-module pom) resolves
all of it into `~/.m2`; the node is assembled under `cache_dir()/opensearch/<version>-r<recipe>/` in a
staging directory that is renamed into place only after its marker file is written, so a
half-finished assembly is never used and is simply redone. Data, logs, the generated config
and the keystore live in `local_dir()/opensearch/`.

The Maven-published k-NN zip carries no native libraries (`libopensearchknn_faiss.so` etc. are
only in the tarball distribution), so the `lucene` engine works (HNSW, cosine/l2/inner product,
efficient filtered kNN) and `faiss` does not; version() and engines() say which engines work.
Adapters must always give `method: {engine: lucene, ...}`: a `knn_vector` without a method
defaults to faiss in 3.x, the mapping is accepted, and the first document indexed into it makes
the plugin load the missing JNI library; the UnsatisfiedLinkError is fatal and the node exits
(it recovers on restart; drop the index). `nmslib` is refused for new indices since 3.0 anyway.

OpenSearch refuses to run as root: as root the node runs as the `kredete` system user. The
cache lives under /root (mode 0700) which that user cannot traverse, so the assembled node is
mirrored with hard links (no copy, same inodes) into the data dir when needed.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from config import ports
from kredete.stack.base import Server, StackError, ensure_system_user, listening, run

OPENSEARCH_VERSION = os.environ.get("KREDETE_OPENSEARCH_VERSION", "3.6.0")
KNN_VERSION = f"{OPENSEARCH_VERSION}.0"
RUN_USER = "kredete"
HEAP = os.environ.get("KREDETE_OPENSEARCH_HEAP", "1g")
#: Bump when the assembly recipe changes; each recipe has its own directory in the shared cache, so a
#: checkout on an older recipe keeps using (and never rebuilds under) a node another checkout runs.
RECIPE = 4
#: Optional parts of the assembly (component -> what is missing without it).
OPTIONAL = {"knn": "k-NN", "s3": "S3 snapshots", "keystore": "the keystore tool"}
S3_PLUGIN = ("repository-s3", "org.opensearch.repositories.s3.S3RepositoryPlugin",
             "The S3 repository plugin adds S3 repositories")
MARKER = ".kredete-complete.json"

# Java 21+ is required by OpenSearch 3.x; Temurin 25 is present on these machines.
JAVA_CANDIDATES = (
    "/usr/lib/jvm/temurin-25-jdk-amd64",
    "/usr/lib/jvm/temurin-21-jdk-amd64",
    "/usr/lib/jvm/java-21-openjdk-amd64",
)

#: module dir name -> (artifactId under org.opensearch.plugin, plugin class, description).
#: percolator-client and rank-eval-client are not published for 3.6.0, so they are left out.
MODULES: dict[str, tuple[str, str, str]] = {
    "transport-netty4": ("transport-netty4-client", "org.opensearch.transport.Netty4ModulePlugin",
                         "Netty 4 based transport implementation"),
    "lang-painless": ("lang-painless", "org.opensearch.painless.PainlessModulePlugin",
                      "An easy, safe and fast scripting language for OpenSearch"),
    "analysis-common": ("analysis-common", "org.opensearch.analysis.common.CommonAnalysisModulePlugin",
                        "Adds \"built in\" analyzers to OpenSearch."),
    "mapper-extras": ("mapper-extras-client", "org.opensearch.index.mapper.MapperExtrasModulePlugin",
                      "Adds advanced field mappers"),
    "reindex": ("reindex-client", "org.opensearch.index.reindex.ReindexModulePlugin",
                "The Reindex module adds APIs to reindex from one index to another or update documents "
                "in place."),
    "parent-join": ("parent-join-client", "org.opensearch.join.ParentJoinModulePlugin",
                    "This module adds the support parent-child queries and aggregations"),
    "aggs-matrix-stats": ("aggs-matrix-stats-client",
                          "org.opensearch.search.aggregations.matrix.MatrixAggregationModulePlugin",
                          "Adds aggregations whose input are a list of numeric fields and output includes "
                          "a matrix."),
    "lang-mustache": ("lang-mustache-client", "org.opensearch.script.mustache.MustacheModulePlugin",
                      "Mustache scripting integration for OpenSearch"),
    "ingest-common": ("ingest-common", "org.opensearch.ingest.common.IngestCommonModulePlugin",
                      "Module for ingest processors that do not require additional security permissions "
                      "or have large dependencies and resources"),
    "transport-grpc": ("transport-grpc", "org.opensearch.transport.grpc.GrpcPlugin",
                       "gRPC based transport implementation"),
}

#: The grants the distribution's modules ship in plugin-security.policy (enforced by the 3.x agent).
POLICIES = {
    "transport-netty4": """grant {
  permission java.io.FilePermission "/proc/sys/net/core/somaxconn", "read";
  permission java.net.SocketPermission "*", "accept,connect";
  permission java.lang.RuntimePermission "*", "setContextClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
  permission java.util.PropertyPermission "sun.nio.ch.bugLevel", "write";
};
""",
    "transport-grpc": """grant {
  permission java.io.FilePermission "/proc/sys/net/core/somaxconn", "read";
  permission java.net.SocketPermission "*", "accept,connect";
  permission java.lang.RuntimePermission "*", "setContextClassLoader";
  permission java.net.NetPermission "accessUnixDomainSocket";
};
""",
    # What the AWS SDK needs (reflection in its JSON/XML binding, sockets to the endpoint, its config files).
    "repository-s3": """grant {
  permission java.lang.RuntimePermission "accessDeclaredMembers";
  permission java.lang.RuntimePermission "getClassLoader";
  permission java.lang.reflect.ReflectPermission "suppressAccessChecks";
  permission java.net.SocketPermission "*", "connect";
  permission java.net.NetPermission "setDefaultAuthenticator";
  permission java.util.PropertyPermission "opensearch.allow_insecure_settings", "read,write";
  permission java.util.PropertyPermission "aws.sharedCredentialsFile", "read,write";
  permission java.util.PropertyPermission "aws.configFile", "read,write";
  permission java.util.PropertyPermission "opensearch.path.conf", "read,write";
  permission java.io.FilePermission "config", "read";
};
""",
    "lang-painless": """grant {
  permission java.lang.RuntimePermission "createClassLoader";
  permission java.lang.RuntimePermission "getClassLoader";
};
""",
    "lang-mustache": """grant {
  permission java.lang.RuntimePermission "accessDeclaredMembers";
};
""",
    "reindex": """grant {
  permission java.net.SocketPermission "*", "connect";
  permission java.net.NetPermission "getProxySelector";
};
""",
}

#: What the distribution puts in lib/ besides the server's own (non-optional) dependencies: the
#: optional ones of the server pom, pinned to what the server was built against, and the class loader
#: for plugins that extend others.
LIB_EXTRAS = (("org.apache.logging.log4j", "log4j-core", "2.25.3"), ("org.locationtech.spatial4j", "spatial4j", "0.7"),
              ("org.locationtech.jts", "jts-core", "1.15.0"),
              ("org.opensearch", "opensearch-plugin-classloader", OPENSEARCH_VERSION))

LOG4J2 = """status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d{ISO8601}][%-5p][%-25c{1.}] [%node_name]%marker %m%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.deprecation.name = org.opensearch.deprecation
logger.deprecation.level = error
"""

_LIST_LINE = re.compile(r"^\s*([^\s:]+):([^\s:]+):([^\s:]+):(?:([^\s:]+):)?([^\s:]+):(compile|runtime):(/\S+)")


def find_java() -> Path:
    """A Java 21+ home: $KREDETE_OPENSEARCH_JAVA_HOME, Temurin 25, or another JDK 21+."""
    env = os.environ.get("KREDETE_OPENSEARCH_JAVA_HOME")
    candidates = [Path(env)] if env else [Path(c) for c in JAVA_CANDIDATES]
    candidates += sorted(Path("/usr/lib/jvm").glob("*"), reverse=True)
    for home in candidates:
        java = home / "bin" / "java"
        if java.exists() and _java_major(java) >= 21:
            return home
    raise StackError("OpenSearch 3.x needs Java 21+: install a JDK 21+ (e.g. Temurin 25 under /usr/lib/jvm) "
                     "or set KREDETE_OPENSEARCH_JAVA_HOME")


def _java_major(java: Path) -> int:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30).stderr
        m = re.search(r'version "(\d+)', out)
        if m:
            return int(m.group(1))
    return 0


class OpenSearchServer(Server):
    name = "opensearch"
    port = ports.OPENSEARCH
    transport_port = ports.OPENSEARCH_TRANSPORT
    start_timeout = 420.0  # a loaded 2-core machine has taken over 2 min to start a node

    def __init__(self) -> None:
        super().__init__()
        self.node_dir = self.cache / "opensearch" / f"{OPENSEARCH_VERSION}-r{RECIPE}"
        info = self._marker()
        if info is not None and not info.get("knn"):
            self.kind = "fallback: OpenSearch without k-NN (exact scoring)"

    # --- provisioning -------------------------------------------------------------------------
    def _marker(self, node: Path | None = None) -> dict[str, Any] | None:
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(((node or self.node_dir) / MARKER).read_text())
            if info.get("recipe") == RECIPE and info.get("opensearch") == OPENSEARCH_VERSION:
                return info
        return None

    def provision(self) -> None:
        if os.geteuid() == 0:
            ensure_system_user(RUN_USER)
        if self._marker() is not None:
            self._apply_kind()
            return
        java_home = find_java()
        if not shutil.which(os.environ.get("KREDETE_MVN", "mvn")):
            raise StackError("Maven (`mvn`) is needed to fetch OpenSearch from Maven Central: apt-get install maven")
        staging = self.node_dir.with_name(f".{self.node_dir.name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        build = staging / "build"
        optional = set(OPTIONAL)
        while True:
            self._write_reactor(build, optional)
            try:
                self._resolve(build)
                break
            except StackError as exc:
                # Typically: a plugin is not (yet) published for this OpenSearch version; go on without it.
                missing = {c for c in optional if f"c-{c}" in str(exc)}
                if not missing:
                    raise
                optional -= missing
        knn = "knn" in optional
        deps = {c: self._read_deps(build / c / "deps.txt") for c in self._components(optional)}
        self._assemble(staging, deps, optional)
        info = {"recipe": RECIPE, "opensearch": OPENSEARCH_VERSION, "knn": KNN_VERSION if knn else None,
                "plugins": sorted(p.name for p in (staging / "plugins").iterdir()),
                "keystore_cli": "keystore" in optional,
                "engines": self._engines(staging) if knn else [], "java_home": str(java_home),
                "java_major": _java_major(java_home / "bin" / "java"),
                "artifacts": sorted({f"{g}:{a}:{v}" for c in deps.values() for g, a, v, _ in c}),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        shutil.rmtree(build, ignore_errors=True)
        (staging / MARKER).write_text(json.dumps(info, indent=1))
        if self.node_dir.exists():
            shutil.rmtree(self.node_dir)
        staging.rename(self.node_dir)
        self._apply_kind()

    def _apply_kind(self) -> None:
        info = self._marker() or {}
        self.kind = "real" if info.get("knn") else "fallback: OpenSearch without k-NN (exact scoring)"

    @staticmethod
    def _components(optional: set[str]) -> list[str]:
        return ["lib", "agent", *MODULES, *sorted(optional)]

    def _write_reactor(self, build: Path, optional: set[str]) -> None:
        """One pom per component so each one's transitive dependencies are listed separately."""
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        comps: dict[str, list[tuple[str, str, str, str]]] = {
            "lib": [("org.opensearch", "opensearch", OPENSEARCH_VERSION, "jar")]
                   + [(g, a, v, "jar") for g, a, v in LIB_EXTRAS],
            "agent": [("org.opensearch", "opensearch-agent", OPENSEARCH_VERSION, "jar")],
        }
        for mod, (artifact, _, _) in MODULES.items():
            comps[mod] = [("org.opensearch.plugin", artifact, OPENSEARCH_VERSION, "jar")]
        if "knn" in optional:
            comps["knn"] = [("org.opensearch.plugin", "opensearch-knn", KNN_VERSION, "zip")]
        if "s3" in optional:
            comps["s3"] = [("org.opensearch.plugin", "repository-s3", OPENSEARCH_VERSION, "jar")]
        if "keystore" in optional:
            comps["keystore"] = [("org.opensearch", "keystore-cli", OPENSEARCH_VERSION, "jar")]
        for comp, deps in comps.items():
            body = [f"<dependency><groupId>{g}</groupId><artifactId>{a}</artifactId><version>{v}</version>"
                    f"<type>{t}</type></dependency>" for g, a, v, t in deps]
            (build / comp).mkdir()
            (build / comp / "pom.xml").write_text(
                '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
                f"<groupId>local.kredete.opensearch</groupId><artifactId>c-{comp}</artifactId>"
                f"<version>1</version><packaging>pom</packaging>"
                f"<dependencies>{''.join(body)}</dependencies></project>\n")
        modules = "".join(f"<module>{c}</module>" for c in comps)
        (build / "pom.xml").write_text(
            '<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>'
            "<groupId>local.kredete.opensearch</groupId><artifactId>assembly</artifactId><version>1</version>"
            f"<packaging>pom</packaging><modules>{modules}</modules></project>\n")

    def _resolve(self, build: Path) -> None:
        mvn = os.environ.get("KREDETE_MVN", "mvn")
        run([mvn, "-B", "-q", "-fae", "dependency:list", "-DincludeScope=runtime",
             "-DoutputAbsoluteArtifactFilename=true", "-DoutputFile=deps.txt", "-DappendOutput=false"],
            cwd=build, timeout=1800)

    @staticmethod
    def _read_deps(path: Path) -> list[tuple[str, str, str, Path]]:
        out = []
        for line in path.read_text().splitlines():
            m = _LIST_LINE.match(line)
            if m:
                g, a, _type, _classifier, v, _scope, file = m.groups()
                out.append((g, a, v, Path(file)))
        if not out:
            raise StackError(f"no dependencies listed in {path}")
        return out

    def _assemble(self, home: Path, deps: dict[str, list[tuple[str, str, str, Path]]], optional: set[str]) -> None:
        lib = home / "lib"
        lib.mkdir()
        in_lib: set[tuple[str, str]] = set()
        for g, a, _v, f in deps["lib"]:
            shutil.copy2(f, lib / f.name)
            in_lib.add((g, a))
        agent = home / "agent"
        agent.mkdir()
        for _g, _a, _v, f in deps["agent"]:
            shutil.copy2(f, agent / f.name)  # Boot-Class-Path of the agent names its siblings
        for mod, (artifact, classname, description) in MODULES.items():
            mdir = home / "modules" / mod
            mdir.mkdir(parents=True)
            main_jar = None
            for g, a, _v, f in deps[mod]:
                if (g, a) in in_lib:
                    continue
                shutil.copy2(f, mdir / f.name)
                if g == "org.opensearch.plugin" and a == artifact:
                    main_jar = f
            if main_jar is None:
                raise StackError(f"module {mod}: {artifact} jar was not resolved")
            extended = []
            with zipfile.ZipFile(main_jar) as zf:
                if "META-INF/services/org.opensearch.painless.spi.PainlessExtension" in zf.namelist():
                    extended.append("lang-painless")
            (mdir / "plugin-descriptor.properties").write_text(
                f"description={description}\nversion={OPENSEARCH_VERSION}\nname={mod}\nclassname={classname}\n"
                f"java.version=21\nopensearch.version={OPENSEARCH_VERSION}\n"
                f"extended.plugins={','.join(extended)}\nhas.native.controller=false\n")
            if mod in POLICIES:
                (mdir / "plugin-security.policy").write_text(POLICIES[mod])
        (home / "plugins").mkdir()
        (home / "bin").mkdir()  # the bootstrap grants itself path.home/bin and insists it exists
        if "s3" in optional:
            name, classname, description = S3_PLUGIN
            pdir = home / "plugins" / name
            pdir.mkdir()
            for g, a, _v, f in deps["s3"]:
                if (g, a) not in in_lib:  # a jar twice on the class path is refused ("jar hell")
                    shutil.copy2(f, pdir / f.name)
            (pdir / "plugin-descriptor.properties").write_text(
                f"description={description}\nversion={OPENSEARCH_VERSION}\nname={name}\nclassname={classname}\n"
                f"java.version=21\nopensearch.version={OPENSEARCH_VERSION}\nextended.plugins=\n"
                "has.native.controller=false\n")
            (pdir / "plugin-security.policy").write_text(POLICIES[name])
        if "keystore" in optional:
            tools = home / "lib" / "tools" / "keystore-cli"
            tools.mkdir(parents=True)
            for _g, _a, _v, f in deps["keystore"]:
                shutil.copy2(f, tools / f.name)
        if "knn" in optional:
            zips = [f for g, a, _v, f in deps["knn"] if a == "opensearch-knn" and f.suffix == ".zip"]
            pdir = home / "plugins" / "opensearch-knn"
            with zipfile.ZipFile(zips[0]) as zf:
                zf.extractall(pdir)
            desc = (pdir / "plugin-descriptor.properties").read_text()
            wanted = re.search(r"^extended\.plugins=(.*)$", desc, re.M)
            for dep in (wanted.group(1).split(",") if wanted else []):
                dep = dep.split(";")[0].strip()
                if dep and not (home / "modules" / dep).is_dir():
                    raise StackError(f"k-NN needs the `{dep}` module, which this assembly lacks")
        for d in ("bin", "lib", "agent", "modules", "plugins"):
            for root, dirs, files in os.walk(home / d):
                for n in dirs:
                    os.chmod(os.path.join(root, n), 0o755)  # noqa: S103 - read-only code, read by the run user
                for n in files:
                    os.chmod(os.path.join(root, n), 0o644)

    @staticmethod
    def _engines(home: Path) -> list[str]:
        engines = ["lucene"]
        libs = {p.name for p in (home / "plugins" / "opensearch-knn").rglob("*.so")}
        if any("faiss" in n for n in libs):
            engines.append("faiss")
        if any("nmslib" in n for n in libs):
            engines.append("nmslib")
        return engines

    # --- running ------------------------------------------------------------------------------
    def version(self) -> str:
        info = self._marker()
        if info is None:
            raise StackError("not provisioned")
        if info.get("knn"):
            return f"OpenSearch {info['opensearch']} + k-NN {info['knn']} ({', '.join(info['engines'])})"
        return f"OpenSearch {info['opensearch']} (no k-NN: exact scoring)"

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def engines(self) -> list[str]:
        """k-NN engines usable on this node (faiss/nmslib need JNI libraries Maven does not carry)."""
        return list((self._marker() or {}).get("engines", []))

    def run_as(self) -> str | None:
        return RUN_USER if os.geteuid() == 0 else None

    def healthy(self) -> bool:
        if not listening(self.port):  # no dial to a port nobody listens on (see base.port_open)
            return False
        try:
            with urllib.request.urlopen(f"{self.url()}/_cluster/health", timeout=3) as resp:  # noqa: S310
                return json.loads(resp.read()).get("status") in ("green", "yellow")
        except (OSError, ValueError, urllib.error.URLError):
            return False

    @property
    def conf_dir(self) -> Path:
        return self.data_dir / "config"

    # --- what differs between the single node and the nodes of a cluster ---------------------------
    cluster_name = "kredete"
    node_name = "kredete-opensearch"
    heap = HEAP

    def discovery_config(self) -> str:
        """opensearch.yml lines of discovery (a single node elects itself and accepts no other)."""
        return "discovery.type: single-node\n"

    def has_plugin(self, name: str) -> bool:
        return name in (self._marker() or {}).get("plugins", [])

    def _java(self) -> Path:
        info = self._marker() or {}
        java_home = Path(info.get("java_home", ""))
        return java_home if (java_home / "bin" / "java").exists() else find_java()

    @property
    def truststore(self) -> Path:
        return self.conf_dir / "s3-truststore.p12"

    def _write_truststore(self, s3: S3Client | None) -> None:
        """The JDK's CAs plus KREDETE_S3_CA_FILE (the local stack's CA), for the S3 client's TLS (keytool)."""
        import hashlib

        stamp = self.conf_dir / ".truststore-digest"
        if s3 is None or not s3.ca_file or not self.has_plugin("repository-s3"):
            self.truststore.unlink(missing_ok=True)
            return
        from config.paths import local_ca_file

        if Path(s3.ca_file) == local_ca_file():
            from kredete.stack.tls import ensure_ca

            ensure_ca()  # the local stack's CA, made by whichever server needs it first
        try:
            digest = hashlib.sha256(Path(s3.ca_file).read_bytes()).hexdigest()
        except OSError as exc:
            raise StackError(f"KREDETE_S3_CA_FILE {s3.ca_file} cannot be read ({exc}); start S3 first "
                             "(`kredete stack up --only s3`) or unset it") from exc
        with contextlib.suppress(OSError):
            if self.truststore.exists() and stamp.read_text() == digest:
                return
        keytool = str(self._java() / "bin" / "keytool")
        tmp = self.truststore.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        # The JDK's cacerts password is the well-known "changeit": a trust store holds public certificates only.
        run([keytool, "-importkeystore", "-noprompt", "-srckeystore", self._java() / "lib" / "security" / "cacerts",
             "-srcstorepass", "changeit", "-destkeystore", tmp, "-deststoretype", "PKCS12", "-deststorepass",
             "changeit"], timeout=120)
        run([keytool, "-importcert", "-noprompt", "-alias", "kredete-local-ca", "-file", s3.ca_file, "-keystore", tmp,
             "-storetype", "PKCS12", "-storepass", "changeit"], timeout=120)
        tmp.replace(self.truststore)
        stamp.write_text(digest)

    def _write_keystore(self, s3: S3Client | None) -> None:
        """The node's keystore with the S3 client's keys, written by OpenSearch's own keystore tool.

        Keys go through stdin (never argv); the keystore is rewritten only when they change.
        """
        keystore = self.conf_dir / "opensearch.keystore"
        stamp = self.conf_dir / ".keystore-digest"
        if s3 is None or s3.access_key is None or not self.has_plugin("repository-s3"):
            return
        if not (self._marker() or {}).get("keystore_cli"):
            raise StackError("this OpenSearch assembly has no keystore tool (org.opensearch:keystore-cli); the S3 "
                             "snapshot repository cannot get its keys")
        import hashlib

        digest = hashlib.sha256(f"{s3.access_key}\0{s3.secret_key}".encode()).hexdigest()
        with contextlib.suppress(OSError):
            if keystore.exists() and stamp.read_text() == digest:
                return
        home = self.home()
        if home != self.node_dir:
            self._mirror(home)
        cp = f"{home / 'lib'}/*:{home / 'lib' / 'tools' / 'keystore-cli'}/*"
        java = str(self._java() / "bin" / "java")
        base = [java, "-Xms64m", "-Xmx128m", f"-Dopensearch.path.home={home}",
                f"-Dopensearch.path.conf={self.conf_dir}", "-cp", cp, "org.opensearch.tools.cli.keystore.KeyStoreCli"]
        with contextlib.suppress(FileNotFoundError):
            keystore.unlink()
        env = {**os.environ, "OPENSEARCH_PATH_CONF": str(self.conf_dir)}
        # One value per line on stdin, in the order of the names.
        proc = subprocess.run([*base, "add", "--stdin", "--force", "s3.client.default.access_key",
                               "s3.client.default.secret_key"], input=f"{s3.access_key}\n{s3.secret_key or ''}\n",
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise StackError(f"the keystore tool could not store the S3 keys: "
                             f"{(proc.stdout + proc.stderr).strip()[-500:]}")
        stamp.write_text(digest)

    def home(self) -> Path:
        """The node to run: the cache itself, or its hard-linked mirror when the run user can't read it."""
        user = self.run_as()
        if not user or self._readable_by(user, self.node_dir / MARKER):
            return self.node_dir
        return self.data_dir / "node"

    @staticmethod
    def _readable_by(user: str, path: Path) -> bool:
        pw = pwd.getpwnam(user)
        with contextlib.suppress(OSError):
            st = path.stat()
            if not (st.st_mode & 0o004 or (st.st_uid == pw.pw_uid and st.st_mode & 0o400)):
                return False
            for parent in path.parents:
                pst = parent.stat()
                if not (pst.st_mode & 0o001 or (pst.st_uid == pw.pw_uid and pst.st_mode & 0o100)):
                    return False
            return True
        return False

    def _mirror(self, dest: Path) -> None:
        """Hard-link the cached node into `dest` (copy if links fail); redone when the cache changes."""
        src_marker = (self.node_dir / MARKER).read_text()
        if not src_marker.strip():
            raise StackError(f"{self.node_dir / MARKER} is empty: delete {self.node_dir} to have it assembled again")
        with contextlib.suppress(OSError):
            if (dest / MARKER).read_text() == src_marker:
                return
        shutil.rmtree(dest, ignore_errors=True)

        def link(src: str, dst: str) -> None:
            if Path(src).name == MARKER:
                return  # written below as a file of its own
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)

        shutil.copytree(self.node_dir, dest, copy_function=link)
        # Never written through a hard link: that would rewrite the shared cache's marker (and a node starting
        # at the same moment would read it half-written).
        (dest / MARKER).write_text(src_marker)

    def prepare(self) -> None:
        if self._marker() is None:
            raise StackError("opensearch is not provisioned: run provision() first")
        for sub in ("", "data", "logs", "tmp", "config"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        home = self.home()
        if home != self.node_dir:
            self._mirror(home)
        s3 = s3_client()
        (self.conf_dir / "opensearch.yml").write_text(
            f"cluster.name: {self.cluster_name}\n"
            f"node.name: {self.node_name}\n"
            f"path.data: {self.data_dir / 'data'}\n"
            f"path.logs: {self.data_dir / 'logs'}\n"
            "network.host: 127.0.0.1\n"
            f"http.port: {self.port}\n"
            f"transport.port: {self.transport_port}\n"
            + self.discovery_config() +
            "cluster.routing.allocation.disk.threshold_enabled: false\n"
            "bootstrap.memory_lock: false\n"
            "action.destructive_requires_name: false\n"
            + (s3.yml() if s3 and self.has_plugin("repository-s3") else ""))
        (self.conf_dir / "log4j2.properties").write_text(LOG4J2)
        self._write_keystore(s3)
        self._write_truststore(s3)
        user = self.run_as()
        if user:
            pw = pwd.getpwnam(user)
            for sub in ("data", "logs", "tmp", "config"):
                for root, dirs, files in os.walk(self.data_dir / sub):
                    os.chown(root, pw.pw_uid, pw.pw_gid)
                    for n in dirs + files:
                        os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)
            os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
            os.chmod(self.data_dir, 0o755)  # noqa: S103 - root writes server.log/pid, the run user the rest
            if not self._readable_by(user, home / "lib"):
                raise StackError(f"user {user} cannot read {home}; check the permissions of its parents")

    def binary_name(self) -> str:
        return "java"

    def command(self) -> tuple[list[str], dict[str, str]]:
        info = self._marker()
        if info is None:
            raise StackError("opensearch is not provisioned")
        java_home = self._java()
        home = self.home()
        agent = next((home / "agent").glob("opensearch-agent-[0-9]*.jar"))
        argv = [
            str(java_home / "bin" / "java"),
            f"-Xms{self.heap}", f"-Xmx{self.heap}",
            "-XX:+UseG1GC", "-XX:G1ReservePercent=25", "-XX:InitiatingHeapOccupancyPercent=30",
            "-Xshare:auto", "-XX:-OmitStackTraceInFastThrow", "-XX:+ShowCodeDetailsInExceptionMessages",
            "-Dio.netty.noUnsafe=true", "-Dio.netty.noKeySetOptimization=true",
            "-Dio.netty.recycler.maxCapacityPerThread=0", "-Dio.netty.allocator.numDirectArenas=0",
            "-Dlog4j.shutdownHookEnabled=false", "-Dlog4j2.disable.jmx=true",
            "-Djava.locale.providers=SPI,CLDR", "-Dfile.encoding=UTF-8", "-Djna.nosys=true",
            f"-Djava.io.tmpdir={self.data_dir / 'tmp'}",
            f"-XX:ErrorFile={self.data_dir / 'logs' / 'hs_err_pid%p.log'}",
            "-XX:MaxDirectMemorySize=512m",
            "--add-modules=jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED",
            f"-javaagent:{agent}",
            "-Dorg.apache.lucene.store.MMapDirectory.sharedArenaMaxPermits=1",
            *(["-XX:+UseCompactObjectHeaders"] if info.get("java_major", 0) >= 25 else []),
            *([f"-Djavax.net.ssl.trustStore={self.truststore}", "-Djavax.net.ssl.trustStorePassword=changeit",
               "-Djavax.net.ssl.trustStoreType=PKCS12"] if self.truststore.exists() else []),
            f"-Dopensearch.path.home={home}",
            f"-Dopensearch.path.conf={self.conf_dir}",
            "-Dopensearch.distribution.type=tar",
            "-Dopensearch.bundled_jdk=false",
            "-cp", f"{home / 'lib'}/*",
            "org.opensearch.bootstrap.OpenSearch",
        ]
        env = {"JAVA_HOME": str(java_home), "OPENSEARCH_PATH_CONF": str(self.conf_dir),
               "OPENSEARCH_TMPDIR": str(self.data_dir / "tmp")}
        return argv, env


class S3Client(BaseModel):
    """Where the nodes' S3 client (snapshot repository) connects: the stack's MinIO or KREDETE_S3_URL, as the
    `backup_writer` principal, trusting KREDETE_S3_CA_FILE besides the JDK's own CAs."""

    endpoint: str
    protocol: str
    region: str
    access_key: str | None = None
    secret_key: str | None = None
    ca_file: str | None = None

    def yml(self) -> str:
        # Path-style requests: MinIO (and most S3-compatible stores) serve buckets under the path.
        return (f"s3.client.default.endpoint: {self.endpoint}\n"
                f"s3.client.default.protocol: {self.protocol}\n"
                f"s3.client.default.region: {self.region}\n"
                "s3.client.default.path_style_access: true\n")


def s3_client() -> S3Client | None:
    """The S3 endpoint and keys from the settings (None when they cannot be known)."""
    from urllib.parse import urlsplit

    from config.settings import resolve

    try:
        s = resolve()
        parts = urlsplit(s.s3_url or "")
    except Exception:  # a configuration problem elsewhere: the node runs without an S3 client
        return None
    if not parts.hostname:
        return None
    from stores.objects.principals import credentials

    access, secret = credentials(s, "backup_writer")  # None: the default chain (an instance role on AWS)
    return S3Client(endpoint=parts.netloc.rsplit("@", 1)[-1], protocol=parts.scheme or "https", region=s.s3_region,
                    access_key=access, secret_key=secret, ca_file=s.s3_ca_file)


# --- smoke routine -------------------------------------------------------------------------------
def _http(method: str, url: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - http://127.0.0.1 only
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310
            return json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return {"http_error": exc.code, "body": json.loads(exc.read() or b"null")}


def _smoke() -> None:
    srv = OpenSearchServer()
    t0 = time.monotonic()
    srv.provision()
    t1 = time.monotonic()
    srv.start()
    t2 = time.monotonic()
    print(f"provision {t1 - t0:.1f}s, start {t2 - t1:.1f}s")
    print(srv.status().model_dump_json(indent=1))
    base = srv.url()
    try:
        plugins = _http("GET", f"{base}/_cat/plugins?format=json")
        print("plugins:", [f"{p['component']} {p['version']}" for p in plugins])
        _http("DELETE", f"{base}/smoke-knn")
        created = _http("PUT", f"{base}/smoke-knn", {
            "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
            "mappings": {"properties": {
                "vec": {"type": "knn_vector", "dimension": 3,
                        "method": {"name": "hnsw", "engine": "lucene", "space_type": "cosinesimil"}},
                "tier": {"type": "keyword"}}}})
        print("create index (lucene hnsw cosinesimil):", created)
        docs = [("a", [1.0, 0.0, 0.0], "gold"), ("b", [0.9, 0.1, 0.0], "silver"), ("c", [0.0, 1.0, 0.0], "gold")]
        for doc_id, vec, tier in docs:
            _http("PUT", f"{base}/smoke-knn/_doc/{doc_id}", {"vec": vec, "tier": tier})
        _http("POST", f"{base}/smoke-knn/_refresh")
        res = _http("POST", f"{base}/smoke-knn/_search", {
            "size": 3, "query": {"knn": {"vec": {"vector": [1.0, 0.05, 0.0], "k": 3}}}})
        print("knn:", [(h["_id"], round(h["_score"], 4)) for h in res["hits"]["hits"]])
        res = _http("POST", f"{base}/smoke-knn/_search", {
            "size": 3, "query": {"knn": {"vec": {"vector": [1.0, 0.05, 0.0], "k": 3,
                                                  "filter": {"term": {"tier": "gold"}}}}}})
        print("filtered knn (tier=gold):", [(h["_id"], round(h["_score"], 4)) for h in res["hits"]["hits"]])
        print("engines:", srv.engines())
        _http("DELETE", f"{base}/smoke-knn-faiss")  # left over by a KREDETE_SMOKE_FAISS=1 run
        if os.environ.get("KREDETE_SMOKE_FAISS") == "1":
            # Demonstrates why faiss is listed as unavailable: the mapping is accepted, the first
            # indexed document makes the plugin load its (absent) JNI library, which kills the node.
            _http("DELETE", f"{base}/smoke-knn-faiss")
            faiss = _http("PUT", f"{base}/smoke-knn-faiss", {
                "settings": {"index": {"knn": True, "number_of_shards": 1, "number_of_replicas": 0}},
                "mappings": {"properties": {"vec": {"type": "knn_vector", "dimension": 3,
                                                    "method": {"name": "hnsw", "engine": "faiss",
                                                               "space_type": "l2"}}}}})
            print("create index (faiss):", json.dumps(faiss)[:300])
            try:
                r = _http("PUT", f"{base}/smoke-knn-faiss/_doc/1?refresh=true", {"vec": [1.0, 0.0, 0.0]})
                print("faiss index doc:", json.dumps(r)[:300])
            except OSError as exc:
                print("faiss index doc failed:", repr(exc))
            time.sleep(3)
            print("node alive after faiss attempt:", bool(srv.pid()), "healthy:", srv.healthy())
            srv.stop()
            srv.start()
            print("restarted; drop faiss index:", _http("DELETE", f"{base}/smoke-knn-faiss"))
        _http("DELETE", f"{base}/smoke-knn")
        pid = srv.pid()
        if pid:
            with contextlib.suppress(OSError):
                rss = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                           if ln.startswith("VmRSS"))
                print("node", rss)
    finally:
        srv.stop()
        print("stopped:", srv.status().pid is None)


if __name__ == "__main__":
    _smoke()
