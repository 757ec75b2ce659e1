"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a Docker engine.

These tests check what can be checked from the files themselves, in the fast tier
(tests/test_compose_stack.py runs them in a Docker engine, `make compose-check`). The compose
file must follow the Compose Specification's JSON schema; our services may set only settings
the pipeline reads; every image is pinned; every service has a health check and waits for its
dependencies to be healthy; one port is published, on 127.0.0.1; one bridge network joins
everything; the Kafka, PostgreSQL and Spark services fit together; and the image installs what
`make setup` installs, as a non-root user under an init process.
"""

from __future__ import annotations

import copy
import functools
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

INIT_PROGRAMS = {"tini", "dumb-init", "docker-init"}
SHELL_KEYWORDS = {"if", "then", "elif", "else", "while", "until", "do", "!", "exec"}
SECRET_INTERPOLATION = re.compile(r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}")
"""`${NAME:?message}`: Compose refuses to start without NAME, and nothing is written in the file."""


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
    lambda doc: doc["services"]["worker"]["depends_on"]["postgres"].update(condition="service_ready"),
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
                     for name in environment(definition) if name not in read)
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
        assert check.get("test") and not check.get("disable"), f"{name} has no health check"
        dependencies = service.get("depends_on", {})
        assert isinstance(dependencies, dict), f"{name}: depends_on needs conditions"
        for dependency, how in dependencies.items():
            assert dependency in services(), f"{name} depends on unknown {dependency}"
            assert how.get("condition") == "service_healthy", f"{name} → {dependency}"


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
    assert all("network_mode" not in s for s in services().values())


def test_the_worker_service_scales():
    worker = services()["worker"]
    assert not {"container_name", "hostname", "ports"} & worker.keys()
    assert "build" in worker and "command" not in worker  # the image's own command: the Faust worker
    assert environment(worker) == environment(services()["dashboard"])


def test_one_named_bridge_network_joins_every_service():
    [(key, network)] = compose()["networks"].items()
    assert network.get("driver") == "bridge" and network.get("name")
    for name, service in services().items():
        joined = service.get("networks", [])
        assert list(joined) == [key], f"{name} is on {joined}"


# --- the parts fit together --------------------------------------------------------------------


def test_three_kafka_nodes_form_one_cluster_and_the_workers_know_them_all():
    brokers = services_with_image("apache/kafka:")
    envs = {name: environment(s) for name, s in brokers.items()}
    assert len(brokers) == 3
    assert len({env["CLUSTER_ID"] for env in envs.values()}) == 1
    ids = {int(env["KAFKA_NODE_ID"]): name for name, env in envs.items()}
    assert sorted(ids) == [1, 2, 3]
    for name, env in envs.items():
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        voters = dict(voter.split("@") for voter in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert {int(i): address.split(":")[0] for i, address in voters.items()} == ids
        assert urlsplit(env["KAFKA_ADVERTISED_LISTENERS"]).hostname == name
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert any(volume.endswith(":" + env["KAFKA_LOG_DIRS"]) for volume in brokers[name]["volumes"])
    advertised = {urlsplit(env["KAFKA_ADVERTISED_LISTENERS"]).netloc for env in envs.values()}
    for name, service in our_services().items():
        if "KAFKA_BROKER" in environment(service):
            assert set(environment(service)["KAFKA_BROKER"].split(",")) == advertised, name


def named_volume_at(service: dict, path: str) -> str:
    [source] = [v.split(":")[0] for v in service.get("volumes", []) if v.split(":")[1] == path]
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
    assert re.search(r"^echo \"host\s+replication\s+\w+\s+all\s+scram-sha-256\"", init["content"], re.M)
    for name, service in our_services().items():
        env = environment(service)
        if "DATABASE_URL" in env:
            assert url(env["DATABASE_URL"]).hostname == "postgres", name
            assert url(env["REPORTS_DATABASE_URL"]).hostname == "postgres-replica", name


def test_passwords_come_from_the_environment_and_none_is_written_down():
    for name, service in services().items():
        for variable, value in environment(service).items():
            if "PASSWORD" in variable:
                assert SECRET_INTERPOLATION.fullmatch(value), f"{name}: {variable}"
            userinfo = re.match(r"\w+://([^@/]*)@", value)
            if userinfo and ":" in userinfo[1]:
                password = userinfo[1].split(":", 1)[1]
                assert SECRET_INTERPOLATION.fullmatch(password), f"{name}: {variable}"


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
    port = option(connect, "--conf").removeprefix("spark.connect.grpc.binding.port=")
    for name, service in our_services().items():
        if "SPARK_REMOTE" in environment(service):
            assert environment(service)["SPARK_REMOTE"] == f"sc://spark-connect:{port}", name


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
