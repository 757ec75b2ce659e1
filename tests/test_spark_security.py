"""The Spark Connect server asks every client for its token, on loopback too.

A client without the token, or with a wrong one, is refused before it can run anything; one
with the token runs the report job. Another system user of the machine can neither read the
token nor use the server to read what the server's user can (a PostgreSQL password file, say).
A server that keeps the database password in its own file is sent none.
"""

import asyncio
import os
import pwd
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pyspark
import pytest
from psycopg.conninfo import conninfo_to_dict

from infra.certificates import CertificateAuthority
from infra.postgres import write_pgpass
from infra.scratch import ScratchStack
from infra.spark_connect import SparkConnectServer
from infra.stack import free_port, open_spark_connect
from infra.tls_front import TlsFront
from restaurant_app.database import Database
from restaurant_app.order_sink import save_orders
from restaurant_app.settings import PROJECT_ROOT, shown_remote
from restaurant_app.traffic import OrderGenerator
from tests.services import command_lines, outward_address, outward_ipv6_address, run_report_job

pytestmark = pytest.mark.integration

GRPC_ROOTS = "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"
"""gRPC's own setting: the CA certificates a TLS channel (pyspark's ``use_ssl=true``) trusts."""
OTHER_USER = "rsales-other"
"""A second, unprivileged system user of this machine, made by the test if missing."""

READ_A_FILE = """
import sys
from pyspark.sql import SparkSession
remote, path = sys.argv[1], sys.argv[2]
try:
    spark = SparkSession.builder.remote(remote).create()
    print("READ", spark.read.text("file://" + path).collect()[0][0])
except Exception as exc:
    code = getattr(exc, "getGrpcStatusCode", lambda: None)()
    print("REFUSED", getattr(code, "name", type(exc).__name__))
"""
"""A client that asks the server to read a file of the server's machine, as the server's user."""

CALL_ONCE = """
import sys, grpc
from pyspark.sql.connect.client import DefaultChannelBuilder
from pyspark.sql.connect.proto import base_pb2, base_pb2_grpc
stub = base_pb2_grpc.SparkConnectServiceStub(DefaultChannelBuilder(sys.argv[1]).toChannel())
request = base_pb2.ConfigRequest(session_id="00112233-4455-6677-8899-aabbccddeeff",
                                 operation=base_pb2.ConfigRequest.Operation(get_all=base_pb2.ConfigRequest.GetAll()))
try:
    stub.Config(request, timeout=30)
    print("SERVED")
except grpc.RpcError as exc:
    print("REFUSED", exc.code().name)
"""
"""One call, without pyspark's retries, on the channel pyspark would open to ``sys.argv[1]``."""


@pytest.fixture(scope="module")
def server_home() -> Iterator[Path]:
    """A folder other users may enter (as ``make run``'s ``.stack`` may be), to show the token's
    own file is what keeps them out."""
    home = Path(tempfile.mkdtemp(prefix="spark-security-"))
    home.chmod(0o755)
    try:
        yield home
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)


@pytest.fixture(scope="module")
def server(server_home: Path) -> Iterator[SparkConnectServer]:
    server = SparkConnectServer(server_home / "spark-connect", free_port(), timezone="UTC",
                                driver_memory="512m")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def private_file(server_home: Path) -> Path:
    """A file only the server's user may read, like ``.stack/postgres/password``."""
    path = server_home / "private"
    path.write_text("only-the-owner-reads-this\n")
    path.chmod(0o600)
    return path


def token(server: SparkConnectServer) -> str:
    return server.token_file.read_text().strip()


def read_through_spark(remote: str, path: Path, user: pwd.struct_passwd | None = None,
                       ca_file: Path | None = None) -> str:
    """What ``READ_A_FILE`` says, run as this user or as ``user``.

    Another user runs the system's Python of the same version on our packages: the interpreter
    the virtual environment links to may sit in a home folder others cannot enter.
    """
    env = {"PATH": os.environ["PATH"], "HOME": tempfile.gettempdir()}
    if ca_file is not None:
        env[GRPC_ROOTS] = str(ca_file)
    python, as_user = sys.executable, {}
    if user is not None:
        python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}", path="/usr/bin")
        assert python, "another user needs a system Python of this version"
        as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        env["PYTHONPATH"] = str(Path(pyspark.__file__).parents[1])
    completed = subprocess.run(
        [python, "-c", READ_A_FILE, remote, str(path)], capture_output=True, text=True,
        timeout=120, cwd=PROJECT_ROOT, check=False, env=env, **as_user,
    )
    lines = completed.stdout.strip().splitlines()
    assert lines, completed.stderr[-2000:]
    return lines[-1]


def other_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.fail("this test makes a second system user, which needs root (the suite runs as root)")
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", OTHER_USER], check=True)
        return pwd.getpwnam(OTHER_USER)


def test_the_token_is_made_once_and_readable_by_its_owner_only(server: SparkConnectServer):
    mode = stat.S_IMODE(server.token_file.stat().st_mode)
    assert mode == 0o600
    assert len(token(server)) >= 32
    server.token_file.chmod(0o644)  # opened up by hand: the next start closes it again
    kept = token(server)
    server.stop()
    server.start()
    assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
    assert token(server) == kept


def test_a_client_without_the_token_is_refused(server: SparkConnectServer, private_file: Path):
    assert read_through_spark(f"sc://localhost:{server.port}", private_file) == "REFUSED UNAUTHENTICATED"


def test_a_client_with_a_wrong_token_is_refused(server: SparkConnectServer, private_file: Path):
    wrong = f"sc://localhost:{server.port}/;token=" + "x" * len(token(server))
    assert read_through_spark(wrong, private_file) == "REFUSED UNAUTHENTICATED"


def test_a_client_with_the_token_is_served(server: SparkConnectServer, private_file: Path):
    assert read_through_spark(server.remote, private_file) == "READ only-the-owner-reads-this"


def test_another_user_can_neither_read_the_token_nor_use_the_server(
    server: SparkConnectServer, private_file: Path,
):
    user = other_user()
    opened = subprocess.run(["cat", str(server.token_file)], capture_output=True, text=True, check=False,
                            user=user.pw_uid, group=user.pw_gid, extra_groups=[])
    assert opened.returncode != 0 and "Permission denied" in opened.stderr
    assert opened.stdout == ""
    refused = read_through_spark(f"sc://localhost:{server.port}", private_file, user)
    assert refused == "REFUSED UNAUTHENTICATED"


def test_the_report_job_uses_the_token_and_shows_it_nowhere(
    stack: ScratchStack, server: SparkConnectServer,
):
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    secret = token(server)
    loopback_ip = server.remote.replace("localhost", "127.0.0.1")  # named as an address: still local
    result = run_report_job(url, env={"SPARK_REMOTE": loopback_ip})
    assert (result["status"], result["exit_code"]) == ("succeeded", 0), result
    assert secret not in server.log_file.read_text(errors="replace")
    assert secret not in shown_remote(server.remote)
    lines = command_lines(server.process.pid)
    assert lines and all(secret not in line for line in lines)


def test_a_server_that_keeps_the_database_password_is_sent_none(
    stack: ScratchStack, server: SparkConnectServer, server_home: Path,
):
    """``SPARK_JDBC_PASSWORD=server``: the job sends Spark no password, so the run works only
    on a server that has it in its own password file, as ``make run``'s has."""
    owner = stack.new_database()
    asyncio.run(Database(owner).migrate())
    name = conninfo_to_dict(owner)["dbname"]
    stack.postgres.enable_roles(name)
    asyncio.run(save_orders(owner, [OrderGenerator(seed=2424).order() for _ in range(3)]))
    job_url = stack.postgres.role_url("restaurant_reports", name)
    env = {"SPARK_REMOTE": server.remote, "SPARK_JDBC_PASSWORD": "server"}
    assert run_report_job(job_url, env=env)["status"] == "failed"  # no password reached Spark
    server.stop()
    server.pgpass_file = server_home / "pgpass"
    write_pgpass(server.pgpass_file, [job_url])
    server.start()
    result = run_report_job(job_url, env=env)
    assert (result["status"], result["orders_read"]) == ("succeeded", 3), result


@pytest.fixture(scope="module")
def front(server: SparkConnectServer, server_home: Path) -> Iterator[TlsFront]:
    """The server behind ``make run``'s TLS front (on every interface, port + 1), its certificate
    for an outward address of this machine, as ``ADVERTISED_HOSTS`` makes it."""
    with ExitStack() as stack:
        hosts = [outward_address(), *filter(None, [outward_ipv6_address()])]
        yield open_spark_connect(stack, server, CertificateAuthority(server_home / "ca"), hosts,
                                 lambda part: None)


@pytest.fixture(scope="module")
def ca_file(server_home: Path) -> Path:
    """The CA of the front's certificate, which a client must trust."""
    return server_home / "ca" / "ca.pem"


def front_remote(front: TlsFront, token: str | None = None) -> str:
    return f"sc://{outward_address()}:{front.port}/;use_ssl=true" + (f";token={token}" if token else "")


def test_over_tls_the_token_is_still_required(front: TlsFront, server: SparkConnectServer,
                                              private_file: Path, ca_file: Path):
    assert read_through_spark(front_remote(front), private_file, ca_file=ca_file) == "REFUSED UNAUTHENTICATED"
    wrong = front_remote(front, "x" * len(token(server)))
    assert read_through_spark(wrong, private_file, ca_file=ca_file) == "REFUSED UNAUTHENTICATED"
    right = front_remote(front, token(server))
    assert read_through_spark(right, private_file, ca_file=ca_file) == "READ only-the-owner-reads-this"


def call_once(remote: str, ca_file: Path | None = None) -> str:
    """What ``CALL_ONCE`` says of one call on pyspark's channel to ``remote``."""
    env = {"PATH": os.environ["PATH"], **({GRPC_ROOTS: str(ca_file)} if ca_file else {})}
    completed = subprocess.run([sys.executable, "-c", CALL_ONCE, remote], capture_output=True, text=True,
                               timeout=120, cwd=PROJECT_ROOT, check=False, env=env)
    lines = completed.stdout.strip().splitlines()
    assert lines, completed.stderr[-2000:]
    return lines[-1]


def test_the_front_refuses_plaintext_and_an_untrusting_client(front: TlsFront, server: SparkConnectServer,
                                                               ca_file: Path):
    assert call_once(f"sc://{outward_address()}:{front.port}") == "REFUSED UNAVAILABLE"  # pyspark's plaintext
    # The right token, but the system's CAs do not vouch for the front's certificate: never sent.
    assert call_once(front_remote(front, token(server))) == "REFUSED UNAVAILABLE"
    assert call_once(front_remote(front, token(server)), ca_file) == "SERVED"
    with socket.create_connection((outward_address(), front.port), timeout=10) as sock:
        sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")  # HTTP/2 in plain text
        assert sock.recv(1024) == b""
    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])  # TLS, but not HTTP/2
    with (socket.create_connection((outward_address(), front.port), timeout=10) as raw,
          context.wrap_socket(raw, server_hostname=outward_address()) as tls):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: spark\r\n\r\n")
        assert tls.recv(1024) == b""  # closed unanswered
    assert "did not ask for HTTP/2" in (front.keystore.parent / "front.log").read_text()


def test_an_ipv6_client_is_served_too(front: TlsFront, server: SparkConnectServer, ca_file: Path):
    """The front listens on every interface of both families, its certificate naming the address."""
    address = outward_ipv6_address()
    if address is None:
        pytest.skip("this machine has no IPv6")
    remote = f"sc://[{address}]:{front.port}/;use_ssl=true;token={token(server)}"
    assert call_once(remote, ca_file) == "SERVED"


def test_the_report_job_runs_through_the_front(stack: ScratchStack, front: TlsFront,
                                               server: SparkConnectServer, ca_file: Path):
    url = stack.new_database()
    asyncio.run(Database(url).migrate())
    asyncio.run(save_orders(url, [OrderGenerator(seed=2425).order() for _ in range(4)]))
    env = {"SPARK_REMOTE": front_remote(front, token(server)),
           GRPC_ROOTS: str(ca_file)}
    result = run_report_job(url, env=env)
    assert (result["status"], result["orders_read"]) == ("succeeded", 4), result
    assert token(server) not in (front.keystore.parent / "front.log").read_text()
