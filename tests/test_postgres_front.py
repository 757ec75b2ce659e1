"""``make run``'s PostgreSQL beyond loopback (``ADVERTISED_HOSTS``): only through its TLS front.

The front (``infra.stack.open_postgres``) is reached here by an address of this machine other
than loopback, as another machine would reach it, with psycopg (libpq); the report job's JDBC
reads through it are in ``tests/test_multi_machine.py``.
"""

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from infra.certificates import CertificateAuthority
from infra.postgres import APP_ROLES, FRONT_BEGIN
from infra.scratch import ScratchStack
from infra.stack import POSTGRES_FRONT_SOURCE, free_port, open_postgres
from infra.tls_front import SSL_REQUEST, TLS_REQUIRED, TlsFront, postgres_error
from tests.services import outward_address, outward_ipv6_address
from tests.test_database_roles import role_urls
from tests.test_database_tls import make_ca

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA of the test's own, as ``DATA_DIR/ca``."""
    return tmp_path_factory.mktemp("postgres-front") / "ca"


@pytest.fixture(scope="module")
def front(stack: ScratchStack, ca_home: Path) -> Iterator[TlsFront]:
    """The shared PostgreSQL behind a front on every interface, its certificate for an outward
    address of this machine, as ``ADVERTISED_HOSTS`` makes it."""
    hosts = [outward_address(), *filter(None, [outward_ipv6_address()])]
    with ExitStack() as services:
        yield open_postgres(services, stack.postgres, CertificateAuthority(ca_home), hosts,
                            lambda part: None, free_port())


@pytest.fixture(scope="module")
def web_login(stack: ScratchStack) -> dict[str, str]:
    """The web role's login to a migrated database, on loopback."""
    return conninfo_to_dict(role_urls(stack, "front")["restaurant_web"])


@pytest.fixture(scope="module")
def verified(front: TlsFront, ca_home: Path, web_login: dict[str, str]) -> Callable[..., str]:
    """The web role's login by the front on the outward address, ``verify-full`` against the CA,
    with ``changes``."""
    def url(**changes: str) -> str:
        return make_conninfo(**{**web_login, "host": outward_address(), "port": str(front.port),
                                "sslmode": "verify-full", "sslrootcert": str(ca_home / "ca.pem"),
                                "connect_timeout": "20", **changes})
    return url


def test_the_right_login_over_verified_tls_works(verified: Callable[..., str]):
    with psycopg.connect(verified()) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("restaurant_web",)
        assert conn.pgconn.ssl_in_use
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
        # The server tells the front's clients from the machine's own by the front's address.
        assert str(conn.execute("SELECT inet_client_addr()").fetchone()[0]) == POSTGRES_FRONT_SOURCE


def test_the_superuser_is_refused_through_the_front(stack: ScratchStack, verified: Callable[..., str]):
    """Its password right or not: pg_hba.conf lets the front's clients in as the application's roles only."""
    with pytest.raises(psycopg.OperationalError, match=r"pg_hba\.conf rejects connection"):
        psycopg.connect(verified(user="postgres", password=stack.postgres.password()))
    with psycopg.connect(stack.postgres.url()) as conn:  # on loopback it still logs in
        assert conn.execute("SELECT current_user").fetchone() == ("postgres",)


def test_the_front_s_lines_are_written_once_however_often_it_starts(stack: ScratchStack, front: TlsFront):
    for _ in range(2):
        stack.postgres.admit_front(POSTGRES_FRONT_SOURCE, APP_ROLES)
    assert (stack.postgres.data_dir / "pg_hba.conf").read_text().count(FRONT_BEGIN) == 1


def test_a_client_without_tls_is_refused(verified: Callable[..., str]):
    with pytest.raises(psycopg.OperationalError, match="takes TLS connections only"):
        psycopg.connect(verified(sslmode="disable"))


def test_a_wrong_password_is_refused(verified: Callable[..., str], web_login: dict[str, str]):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(verified(password="x" * len(web_login["password"])))


def test_a_client_that_does_not_trust_the_ca_is_refused(verified: Callable[..., str], tmp_path: Path):
    other_ca, _ = make_ca(tmp_path, "another-ca")
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(verified(sslrootcert=str(other_ca)))
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(verified(sslrootcert="system"))  # the system's CAs do not vouch for it either


def test_a_plain_startup_gets_postgresql_s_error_and_no_byte_reaches_the_server(front: TlsFront):
    """A client that sends its startup message in plain text, as ``sslmode=disable`` does."""
    with socket.create_connection((outward_address(), front.port), timeout=10) as sock:
        sock.sendall(b"\0\0\0\x08\0\x03\0\0")
        assert b"".join(iter(lambda: sock.recv(1024), b"")) == postgres_error(TLS_REQUIRED)  # then closed
    with socket.create_connection((outward_address(), front.port), timeout=10) as sock:
        sock.sendall(SSL_REQUEST)
        assert sock.recv(1) == b"S"  # then the TLS handshake, which a bare socket does not begin
    assert "it did not ask for TLS" in (front.keystore.parent / "front.log").read_text()


def test_an_ipv6_client_is_served_too(verified: Callable[..., str]):
    """The front listens on every interface of both families, its certificate naming the address."""
    address = outward_ipv6_address()
    if address is None:
        pytest.skip("this machine has no IPv6")
    with psycopg.connect(verified(host=address)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("restaurant_web",)


def test_the_server_itself_stays_on_loopback(stack: ScratchStack, front: TlsFront):
    with pytest.raises(OSError):
        socket.create_connection((outward_address(), stack.postgres.port), timeout=10).close()
