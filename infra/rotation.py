"""``python -m infra rotate-secrets``: forget the secrets ``make run`` made, so that its next start
makes new ones (the roles' passwords, the Spark Connect token, the Spark cluster's secret, the
small CA and the certificates it signed: the secure Kafka's and the TLS fronts' of Spark Connect
and PostgreSQL)."""

from pathlib import Path

from infra.java import StackError
from infra.stack import local_postgres

ROTATED = ("postgres/roles", "spark-connect/token", "spark-connect/pgpass", "spark-cluster/auth.properties",
           "ca", "kafka-secrets/ca.pem", "kafka-secrets/ca.key", "kafka-secrets/ca.srl",
           "kafka-secrets/broker.pem", "spark-connect/front.pem", "postgres-front/front.pem")
"""What is made again at start, under ``DATA_DIR``. The superuser's password is not among them:
PostgreSQL would no longer let ``make run`` in (``ALTER ROLE postgres PASSWORD`` in ``make psql``
and the new one in ``DATA_DIR/postgres/password`` change it), nor are the Kafka users' (``python -m
infra kafka-password``): Kafka keeps them in its data. ``kafka-secrets/ca.*`` is the CA of an
older ``make run``, which the new one takes over (``infra.stack.local_ca``)."""


def ensure_stopped(data_dir: Path, because: str) -> None:
    """Raise ``StackError`` (one line, ending with ``because``) while ``make run`` on ``data_dir`` is up."""
    if local_postgres(data_dir).postmaster_pid() is not None:
        raise StackError(f"make run is up (its PostgreSQL in {data_dir / 'postgres'} runs): stop it"
                         f" first; {because}")


def rotate_secrets(data_dir: Path) -> list[Path]:
    """Remove the secret files of a stopped ``make run``; return the files removed."""
    ensure_stopped(data_dir, "its processes hold the secrets that would change.")
    removed = []
    for name in ROTATED:
        path = data_dir / name
        for file in sorted(path.iterdir()) if path.is_dir() else [path] if path.exists() else []:
            file.unlink()
            removed.append(file)
    return removed
