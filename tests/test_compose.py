"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine.

These tests check what can be checked from the files themselves, in the fast tier
(tests/test_compose_stack.py runs them in a Docker engine, `make compose-check`). The compose
file must follow the Compose Specification's JSON schema; our services may set only settings the
pipeline reads; every image is pinned; every service has a health check (but the one-shots) and
waits for its dependencies to be healthy (or done); one port is published, on 127.0.0.1; one
bridge network joins everything; the Kafka, PostgreSQL and Spark services fit together, each hop
secured (TLS and a login, secrets only in files of the service's own volume); and the image
installs what `make setup` installs, as a non-root user under an init process.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
import os
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from infra import compose_secrets
from infra.kafka_broker import GROUP_JOIN_WAIT_MS
from restaurant_app.settings import PROJECT_ROOT, Settings

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
MAKEFILE = PROJECT_ROOT / "Makefile"
POM = PROJECT_ROOT / "infra" / "pom.xml"
COMPOSE_SCHEMA = PROJECT_ROOT / "node_modules" / "dclint" / "schemas" / "compose.schema.json"
"""The Compose Specification's JSON schema (compose-spec's schema/compose-spec.json), as the npm
package dclint ships it; dclint is a pinned dev dependency in package.json, so `make setup`
installs it."""

IMAGE_RUNTIME_VARIABLES = {"PYTHONUNBUFFERED"}
"""Variables the Dockerfile may set that are Python's own, not the pipeline's settings."""
LIBRARY_VARIABLES = {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "PGPASSFILE", "SPARK_LOCAL_IP",
                     "SPARK_DAEMON_JAVA_OPTS"}
"""Variables our services may set for the libraries under the pipeline: the CA that grpc (the
Spark Connect client) trusts, the password file of libpq and the JDBC driver, and the Spark
master's and worker's web UI address and Java options."""
SECRETS_AT = str(compose_secrets.MOUNTED_AT)
ONE_SHOTS = {"secrets", "setup"}
"""Services that run once and exit: the others wait for them to have succeeded."""

INIT_PROGRAMS = {"tini", "dumb-init", "docker-init"}
SHELL_KEYWORDS = {"if", "then", "elif", "else", "while", "until", "do", "!", "exec"}


# --- reading the files -------------------------------------------------------------------------


@functools.cache
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def our_services() -> dict[str, dict]:
    """The services that run the image built from our Dockerfile."""
    return {name: service for name, service in services().items() if "build" in service}


def environment(service: dict) -> dict[str, str]:
    """A service's environment, given as a mapping or as a list of NAME=value."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def url(value: str):
    """``value`` as a URL, each ``${...}`` in it (a ? in it would end the host) standing as ``x``."""
    return urlsplit(re.sub(r"\$\{[^}]*\}", "x", value))


def services_with_image(prefix: str) -> dict[str, dict]:
    return {name: s for name, s in services().items() if s.get("image", "").startswith(prefix)}


@functools.cache
def settings_read() -> frozenset[str]:
    """Every environment variable ``Settings.from_env()`` looks up, seen by watching it read."""

    class RecordingEnviron(dict):
        def __init__(self) -> None:
            super().__init__()
            self.names: set[str] = set()

        def get(self, key, default=None):
            self.names.add(key)
            return default

        def __getitem__(self, key):
            self.names.add(key)
            raise KeyError(key)

        def __contains__(self, key) -> bool:
            self.names.add(key)
            return False

    recording = RecordingEnviron()
    with mock.patch.object(os, "environ", recording):
        Settings.from_env()
    return frozenset(recording.names)


@functools.cache
def pom_properties() -> dict[str, str]:
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    properties = ET.parse(POM).getroot().find("m:properties", namespace)
    return {child.tag.split("}", 1)[1]: (child.text or "").strip() for child in properties}


@dataclass
class Stage:
    """One stage of the Dockerfile: its base, its name and its instructions, in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def commands(self) -> list[list[str]]:
        """The shell commands its RUN instructions run, split into words."""
        return [words for keyword, args in self.instructions if keyword == "RUN"
                for words in shell_commands(self.expand(args))]

    def expand(self, text: str) -> str:
        return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: self.env.get(m[1] or m[2], m[0]), text)

    def last(self, keyword: str) -> str | None:
        found = [args for kw, args in self.instructions if kw == keyword]
        return found[-1] if found else None


@functools.cache
def dockerfile_stages() -> tuple[Stage, ...]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: list[Stage] = []
    build_args: dict[str, str] = {}  # the ARGs before the first FROM, at their defaults
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            build_args[name] = default
            continue
        if keyword == "FROM":
            words = Stage(base="", name=None, env=build_args).expand(args).split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
            continue
        stage = stages[-1]
        stage.instructions.append((keyword, args))
        if keyword == "ENV":
            for name, value in re.findall(r"(\w+)=(\S+)", args):
                stage.env[name] = stage.expand(value)
    return tuple(stages)


def final_stage() -> Stage:
    return dockerfile_stages()[-1]


def shell_commands(line: str) -> list[list[str]]:
    """The simple commands of a shell line (split at &&, ||, ;, | and braces), as words."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    for token in lexer:
        if token in {"&&", "||", ";", "|", "{", "}"}:
            commands.append([])
        else:
            commands[-1].append(token)
    for words in commands:  # `if cmd`, `until cmd; do`, `exec cmd`: the command is cmd
        while words and words[0] in SHELL_KEYWORDS:
            words.pop(0)
    return [words for words in commands if words]


@functools.cache
def makefile_commands() -> tuple[list[str], ...]:
    """The recipes' shell commands, with the Makefile's variables put in, split into words."""
    text = re.sub(r"\\\n\s*", " ", MAKEFILE.read_text())
    variables = dict(re.findall(r"^(\w+)\s*[:?]?=\s*(.*?)\s*$", text, re.M), CURDIR=str(PROJECT_ROOT))
    recipes = [re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), line.strip().lstrip("@-"))
               for line in text.splitlines() if line.startswith("\t")]
    return tuple(words for line in recipes for words in shell_commands(line))


def command_of(commands, program: str, subcommand: str | None = None, *, having: str = "") -> list[str]:
    """The one command that runs ``program`` (by its file name) [``subcommand``] with ``having``."""
    found = [list(words) for words in commands
             if Path(words[0]).name == program
             and (subcommand is None or words[1:2] == [subcommand])
             and (not having or any(w == having or w.startswith(having + "=") for w in words))]
    assert len(found) == 1, f"expected one {program} {subcommand or ''} command, found {found}"
    return found[0]


def option(words: list[str], *names: str) -> str | None:
    """The value of an option given as ``--name value``, ``--name=value`` or ``-Dname=value``."""
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    return None


# --- the compose file as a whole ---------------------------------------------------------------


def compose_schema() -> dict:
    assert COMPOSE_SCHEMA.exists(), f"{COMPOSE_SCHEMA} is missing: run 'make setup' (npm ci)"
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema.get("title") == "Compose Specification"
    assert "draft-07" in schema["$schema"]
    return schema


def schema_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(compose_schema())
    return sorted(f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
                  for error in validator.iter_errors(document))


def test_the_compose_file_follows_the_compose_specification():
    assert schema_errors(compose()) == []


@pytest.mark.parametrize("mistake", [
    lambda doc: doc["services"]["worker"].update(helthcheck={"test": ["CMD", "true"]}),
    lambda doc: doc["services"]["worker"]["depends_on"]["setup"].update(condition="service_ready"),
    lambda doc: doc["services"]["dashboard"].update(ports=[{"target": 6066, "host-ip": "127.0.0.1"}]),
    lambda doc: doc["networks"]["restaurant"].update(driver=["bridge"]),
], ids=["misspelt key", "unknown condition", "misspelt port key", "driver not a string"])
def test_the_schema_check_would_catch_a_mistake(mistake):
    document = copy.deepcopy(compose())
    mistake(document)
    assert schema_errors(document) != []


def test_our_services_set_only_settings_the_pipeline_reads():
    read = settings_read()
    assert {"KAFKA_BROKER", "DATABASE_URL", "WEB_HOST", "JARS_DIR"} <= read, "the recording missed reads"
    assert set(our_services()) >= {"dashboard", "worker", "spark-master", "spark-worker", "spark-connect"}
    unknown = sorted(f"{service}: {name}" for service, definition in our_services().items()
                     for name in environment(definition) if name not in read | LIBRARY_VARIABLES)
    assert unknown == [], "not read by restaurant_app/settings.py"


def test_the_image_sets_only_settings_and_python_s_own_variables():
    unknown = sorted(name for stage in dockerfile_stages() for name in stage.env
                     if name not in settings_read() | IMAGE_RUNTIME_VARIABLES)
    assert unknown == []


def image_references() -> list[tuple[str, str]]:
    """Every image the stack pulls or builds on: (where, reference)."""
    stage_names = {stage.name for stage in dockerfile_stages() if stage.name}
    return ([(f"service {name}", s["image"]) for name, s in services().items() if "image" in s]
            + [(f"Dockerfile FROM {i + 1}", stage.base) for i, stage in enumerate(dockerfile_stages())
               if stage.base not in stage_names])


@pytest.mark.parametrize(("where", "reference"), image_references())
def test_every_image_is_pinned(where: str, reference: str):
    last_part = reference.rsplit("/", 1)[-1]  # a registry's host:port is not a tag
    tag = last_part.rpartition(":")[2] if ":" in last_part else ""
    assert tag, f"{where}: {reference} has no tag"
    assert tag != "latest", f"{where}: {reference}"
    built_here = any(s.get("image") == reference and "build" in s for s in services().values())
    if not built_here:
        assert re.search(r"\d+\.\d+", tag), f"{where}: {reference} names no version"


def test_the_kafka_brokers_run_the_version_make_run_fetches():
    tags = {s["image"].rsplit(":", 1)[1] for s in services_with_image("apache/kafka:").values()}
    assert tags == {pom_properties()["kafka.version"]}


def test_every_service_has_a_health_check_and_waits_for_its_dependencies_to_be_healthy():
    for name, service in services().items():
        check = service.get("healthcheck") or {}
        if name in ONE_SHOTS:  # runs once: it is never restarted, and nothing checks its health
            assert service.get("restart") == "no" and not check, name
        else:
            assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        dependencies = service.get("depends_on", {})
        assert isinstance(dependencies, dict), f"{name}: depends_on needs conditions"
        for dependency, how in dependencies.items():
            assert dependency in services(), f"{name} depends on unknown {dependency}"
            wanted = "service_completed_successfully" if dependency in ONE_SHOTS else "service_healthy"
            assert how.get("condition") == wanted, f"{name} → {dependency}"


def test_every_service_that_reads_a_secret_waits_for_them_to_be_made():
    def waits_for_secrets(name: str) -> bool:
        dependencies = services()[name].get("depends_on", {})
        return "secrets" in dependencies or any(waits_for_secrets(d) for d in dependencies)

    for name, service in services().items():
        if name != "secrets" and SECRETS_AT in json.dumps(service):
            assert waits_for_secrets(name), name


def published_ports() -> list[tuple[str, str, str]]:
    """(service, host address, container port) of every published port; '' is every address."""
    found = []
    for name, service in services().items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                found.append((name, port.get("host_ip", ""), str(port["target"])))
            else:
                parts = str(port).split("/")[0].rsplit(":", 2)
                found.append((name, parts[0] if len(parts) == 3 else "", parts[-1]))
    return found


def test_only_the_dashboard_is_published_and_only_on_loopback():
    ports = published_ports()
    assert len(ports) == 1, ports
    [(service, address, port)] = ports
    assert address == "127.0.0.1"
    assert port == environment(services()[service])["WEB_PORT"]
    # A service may share another's network namespace (the TLS front), never the host's.
    for name, service in services().items():
        mode = service.get("network_mode", "service:")
        assert mode.startswith("service:") and mode.removeprefix("service:") in services() | {"": 1}, name


def test_the_worker_service_scales():
    worker = services()["worker"]
    assert not {"container_name", "hostname", "ports"} & worker.keys()
    assert "build" in worker and "command" not in worker  # the image's own command: the Faust worker
    assert environment(worker) == environment(services()["dashboard"])


def test_one_named_bridge_network_joins_every_service():
    [(key, network)] = compose()["networks"].items()
    assert network.get("driver") == "bridge" and network.get("name")
    for name, service in services().items():
        if "network_mode" in service:  # in the namespace of a service that is on it
            assert "networks" not in service, name
            continue
        joined = service.get("networks", [])
        assert list(joined) == [key], f"{name} is on {joined}"


# --- the parts fit together --------------------------------------------------------------------


def properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.replace("\\\n", "").splitlines()
                if line and not line.startswith("#"))


def listener_address(listener: str) -> str:
    """``host:port`` of a Kafka listener ``NAME://host:port``."""
    return listener.split("://", 1)[1]


def test_three_kafka_nodes_form_one_cluster_and_the_workers_know_them_all():
    brokers = services_with_image("apache/kafka:")
    envs = {name: environment(s) for name, s in brokers.items()}
    assert sorted(brokers) == sorted(compose_secrets.KAFKA_NODES)
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    configs = {name: properties(compose_secrets.broker_properties(i, name, "password"))
               for i, name in enumerate(compose_secrets.KAFKA_NODES, 1)}
    for name, env in envs.items():
        assert env["NODE"] == name
        config = configs[name]
        ids = {int(c["node.id"]): n for n, c in configs.items()}
        assert sorted(ids) == [1, 2, 3]
        assert config["process.roles"] == "broker,controller"
        voters = dict(voter.split("@") for voter in config["controller.quorum.voters"].split(","))
        assert {int(i): address.split(":")[0] for i, address in voters.items()} == ids
        assert listener_address(config["advertised.listeners"]).split(":")[0] == name
        assert config["default.replication.factor"] == "3"
        assert config["min.insync.replicas"] == "2"
        assert config["group.initial.rebalance.delay.ms"] == str(GROUP_JOIN_WAIT_MS)  # workers join together
        assert any(volume == f"{name}-data:" + config["log.dirs"] for volume in brokers[name]["volumes"])
    advertised = {listener_address(config["advertised.listeners"]) for config in configs.values()}
    for name, service in our_services().items():
        if "KAFKA_BROKER" in environment(service):
            assert set(environment(service)["KAFKA_BROKER"].split(",")) == advertised, name


def test_kafka_takes_scram_over_tls_only_with_acls_and_tls_between_its_nodes():
    config = properties(compose_secrets.broker_properties(1, "kafka-1", "password"))
    protocols = dict(pair.split(":") for pair in config["listener.security.protocol.map"].split(","))
    assert {listener.split("://")[0] for listener in config["listeners"].split(",")} == {
        "SASL_SSL", "CONTROLLER"}
    assert protocols == {"SASL_SSL": "SASL_SSL", "CONTROLLER": "SSL"}
    assert config["listener.name.controller.ssl.client.auth"] == "required"
    assert config["inter.broker.listener.name"] == "SASL_SSL"
    assert config["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert config["authorizer.class.name"].endswith("StandardAuthorizer")
    assert config["allow.everyone.if.no.acl.found"] == "false"
    for name, service in our_services().items():
        env = environment(service)
        if "KAFKA_BROKER" in env and name != "setup":
            assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL", name
            assert env["KAFKA_SASL_USERNAME"] == "worker", name
    # The ACLs are set by `setup`, before any worker starts.
    assert services()["setup"]["command"][-1] == "compose-setup"
    assert "setup" in services()["worker"]["depends_on"]


def volume_mounts(service: dict) -> list[tuple[str, str, bool]]:
    """(source, target, read only) of each volume of ``service``, in either syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append((volume["source"], volume["target"], bool(volume.get("read_only"))))
        else:
            parts = volume.split(":")
            mounts.append((parts[0], parts[1], parts[2:] == ["ro"]))
    return mounts


def named_volume_at(service: dict, path: str) -> str:
    [source] = [source for source, target, _ in volume_mounts(service) if target == path]
    assert source in compose()["volumes"], f"{source} is not a named volume"
    return source


def test_the_replica_streams_from_a_slot_of_the_primary_and_each_url_names_its_server():
    primary, replica = services()["postgres"], services()["postgres-replica"]
    assert named_volume_at(primary, "/var/lib/postgresql/data")
    assert named_volume_at(replica, "/var/lib/postgresql/data")
    [script] = [part for part in replica["entrypoint"] if "pg_basebackup" in part]
    backup = command_of(shell_commands(script.replace("\\\n", " ")), "pg_basebackup")
    assert {"-R", "--write-recovery-conf"} & set(backup)
    assert option(backup, "--host", "-h") == "postgres"
    slot = option(backup, "--slot", "-S")
    [init] = [compose()["configs"][c["source"]] for c in primary["configs"]
              if c["target"].startswith("/docker-entrypoint-initdb.d/")]
    assert f"pg_create_physical_replication_slot('{slot}')" in init["content"]
    hba = re.search(r"pg_hba.conf\" <<'HBA'\n(.*?)\nHBA", init["content"], re.S)[1].splitlines()
    # From the network, TLS only: every line for other hosts than the container's own is hostssl.
    remote = [line.split() for line in hba if line.split()[0] != "local" and not re.match(
        r"host\s+all\s+all\s+(127\.0\.0\.1/32|::1/128)\s", line)]
    assert remote and all(words[0] == "hostssl" and words[-1] == "scram-sha-256" for words in remote)
    assert ["hostssl", "replication", "replicator", "all", "scram-sha-256"] in remote
    for server in (primary, replica):  # TLS on, with the certificate made for the server's name
        command = server["command"] if server is primary else replica["entrypoint"][-1].split()
        assert "ssl=on" in command
    for name, service in our_services().items():
        env = environment(service)
        if "DATABASE_URL" in env:
            assert url(env["DATABASE_URL"]).hostname == "postgres", name
            assert env["POSTGRES_CA_FILE"] == f"{SECRETS_AT}/ca.pem", name  # verify-full against it
        if "REPORTS_DATABASE_URL" in env:
            assert url(env["REPORTS_DATABASE_URL"]).hostname == "postgres-replica", name
            for variable, role in (("DATABASE_URL", "restaurant_ingest"),
                                   ("WEB_DATABASE_URL", "restaurant_web"),
                                   ("REPORT_JOB_DATABASE_URL", "restaurant_reports"),
                                   ("REPORTS_DATABASE_URL", "restaurant_web")):
                assert url(env[variable]).username == role, (name, variable)


SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
NOT_SECRETS = {"SPARK_JDBC_PASSWORD"}
"""Settings named for a secret that hold none (whether the report job sends the password)."""


def test_no_secret_is_written_down_or_given_in_an_environment_variable():
    for name, service in services().items():
        for variable, value in environment(service).items():
            if SECRET_NAME.search(variable):  # only files: `docker inspect` shows the environment
                assert variable in NOT_SECRETS or (
                    variable.endswith("_FILE") and value.startswith(SECRETS_AT + "/")), f"{name}: {variable}"
            userinfo = re.match(r"\w+://([^@/]*)@", value)
            assert not (userinfo and ":" in userinfo[1]), f"{name}: {variable} holds a password"
            assert "token=" not in value.lower(), f"{name}: {variable}"
        words = json.dumps([service.get("command"), service.get("entrypoint")])
        assert not re.search(r"password=|token=|secret=", words, re.IGNORECASE), name


def secret_volumes(service: dict) -> list[tuple[str, bool]]:
    """The secrets volumes ``service`` mounts where the services read them: (volume, read only)."""
    return [(source, read_only) for source, target, read_only in volume_mounts(service)
            if target == SECRETS_AT]


def test_each_service_mounts_only_its_own_secrets_and_names_only_files_made_for_it():
    made = {f"{service.volume}-secrets": service for service in compose_secrets.SERVICES}
    secrets = services()["secrets"]
    assert {source: target for source, target, _ in volume_mounts(secrets)} == {
        **{volume: f"/secrets/{service.volume}" for volume, service in made.items()},
        "made-secrets": "/secrets/made"}
    assert secrets["command"][-2:] == ["compose-secrets", "/secrets"]
    for name, service in services().items():
        if name == "secrets":
            continue
        mounted = secret_volumes(service)
        assert not {s for s, _, _ in volume_mounts(service)} & {"made-secrets"}, name
        assert len(mounted) <= 1, f"{name} mounts the secrets of {mounted}"
        named = set(re.findall(re.escape(SECRETS_AT) + r"/([\w.-]+)", json.dumps(service)))
        if not mounted:
            assert not named, f"{name} names {named} but mounts no secrets"
            continue
        [(volume, read_only)] = mounted
        assert read_only or name == "setup", f"{name} may write its secrets"  # setup writes admin's
        assert named <= set(made[volume].files), f"{name}: {named - set(made[volume].files)} not made"
    kafka_start = compose()["configs"]["kafka-start"]["content"]
    assert "scram-arguments" in kafka_start and "scram-arguments" in made["kafka-secrets"].files


def test_spark_connect_runs_on_the_master_with_the_jdbc_driver_the_pom_fetches():
    master = services()["spark-master"]["command"]
    assert master[1] == "org.apache.spark.deploy.master.Master"
    master_url = f"spark://{option(master, '--host')}:{option(master, '--port')}"
    assert services()["spark-worker"]["command"][-1] == master_url
    connect = services()["spark-connect"]["command"]
    assert option(connect, "--class") == "org.apache.spark.sql.connect.service.SparkConnectServer"
    assert option(connect, "--master") == master_url
    jdbc_jar = f"postgresql-{pom_properties()['postgresql-jdbc.version']}.jar"
    assert option(connect, "--jars") == f"{final_stage().env['JARS_DIR']}/{jdbc_jar}"
    conf = dict(value.split("=", 1) for key, value in itertools.pairwise(connect) if key == "--conf")
    assert conf["spark.connect.grpc.binding.address"] == "127.0.0.1"  # the network reaches the TLS front
    assert option(connect, "--properties-file") == f"{SECRETS_AT}/spark-connect.properties"  # the token
    front = services()["spark-connect-tls"]
    assert front["network_mode"] == "service:spark-connect"
    assert option(front["command"], "--to") == f"127.0.0.1:{conf['spark.connect.grpc.binding.port']}"
    tls_port = option(front["command"], "--listen").rsplit(":", 1)[1]
    for name, service in our_services().items():
        env = environment(service)
        if "SPARK_REMOTE" in env:
            assert env["SPARK_REMOTE"] == f"sc://spark-connect:{tls_port}/;use_ssl=true", name
            assert env["SPARK_CONNECT_TOKEN_FILE"] == f"{SECRETS_AT}/spark-connect-token", name
            assert env["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] == f"{SECRETS_AT}/ca.pem", name
    for name in ("spark-master", "spark-worker"):  # the cluster's shared secret and encryption
        command = services()[name]["command"]
        assert option(command, "--properties-file") == f"{SECRETS_AT}/spark-cluster.properties"
        assert option(command, "--host") == name  # its RPC port on the network
        assert environment(services()[name])["SPARK_LOCAL_IP"] == "127.0.0.1"  # its web UI not


# --- the image ---------------------------------------------------------------------------------


def test_the_image_installs_what_make_setup_installs():
    make, stages = makefile_commands(), dockerfile_stages()
    image = [words for stage in stages for words in stage.commands()]

    make_pip = command_of(make, "pip", "install", having="--editable")
    image_pip = command_of(image, "pip", "install", having="--editable")
    assert option(image_pip, "--constraint", "-c") == option(make_pip, "--constraint", "-c")
    project = option(make_pip, "--editable", "-e")
    assert option(image_pip, "--editable", "-e") == project.split("[")[0]  # without the dev tools

    make_mvn, image_mvn = command_of(make, "mvn"), command_of(image, "mvn")
    assert option(image_mvn, "-f", "--file") == option(make_mvn, "-f", "--file")
    assert "dependency:copy-dependencies" in make_mvn and "dependency:copy-dependencies" in image_mvn
    assert option(image_mvn, "-DincludeScope") == option(make_mvn, "-DincludeScope")
    jars_dir = final_stage().env["JARS_DIR"]
    assert option(image_mvn, "-DoutputDirectory") == jars_dir
    [jars_stage] = [s for s in stages if any(words[:1] == ["mvn"] for words in s.commands())]
    assert f"--from={jars_stage.name} {jars_dir} {jars_dir}" in [
        final_stage().expand(args) for keyword, args in final_stage().instructions if keyword == "COPY"]

    assert command_of(make, "npm", "ci") and command_of(image, "npm", "ci")
    [npm_stage] = [s for s in stages if any(words[:2] == ["npm", "ci"] for words in s.commands())]
    copied = [args.split() for keyword, args in npm_stage.instructions if keyword == "COPY"]
    assert any("package-lock.json" in words[:-1] for words in copied)


def test_the_image_runs_as_a_non_root_user_under_an_init_process():
    stage = final_stage()
    user = stage.last("USER")
    assert user and user.split(":")[0] not in {"root", "0"}
    entrypoint = json.loads(stage.last("ENTRYPOINT"))
    assert Path(entrypoint[0]).name in INIT_PROGRAMS
    installed = [words for words in stage.commands() if words[:2] == ["apt-get", "install"]]
    assert any(Path(entrypoint[0]).name in words for words in installed)
    assert json.loads(stage.last("CMD"))[:3] == ["faust", "-A", "restaurant_app"]


def test_the_build_leaves_out_history_local_data_caches_and_secrets():
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    patterns = {line.strip("/") for line in lines if not line.startswith("!")}
    for path in (".git", ".env", ".venv", ".stack", "node_modules", "bench/.work", "**/__pycache__"):
        assert path in patterns, f"{path} would be sent to docker build"
    assert not [line for line in lines if line.startswith("!")], "an exception re-includes something"
