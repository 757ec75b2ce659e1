"""PostgreSQL beyond loopback is reached with verified TLS, by psycopg and by Spark's JDBC reads."""

from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict

from restaurant_app.settings import SettingError, Settings, with_verified_tls
from spark_reports.session import Jdbc

REMOTE = "postgresql://app:pw@db.example:5432/restaurant"


@pytest.mark.parametrize("url", [
    "postgresql://app:pw@127.0.0.1:5432/restaurant", "postgresql://app@localhost/restaurant",
    "postgresql://app@[::1]:5432/restaurant", "postgresql:///restaurant?host=/run/postgresql",
])
def test_loopback_and_unix_sockets_stay_as_they_are(url: str):
    assert with_verified_tls(url, "") == url


def test_a_server_beyond_loopback_gets_verify_full_with_the_system_cas():
    params = conninfo_to_dict(with_verified_tls(REMOTE, ""))
    assert (params["sslmode"], params["sslrootcert"], params["password"]) == ("verify-full", "system", "pw")


def test_a_ca_file_is_used_in_url_and_keyword_forms(tmp_path: Path):
    ca = str(tmp_path / "ca.pem")
    assert conninfo_to_dict(with_verified_tls(REMOTE + "?application_name=x", ca))["sslrootcert"] == ca
    keywords = conninfo_to_dict(with_verified_tls("host=db.example dbname=restaurant", ca))
    assert (keywords["sslmode"], keywords["sslrootcert"]) == ("verify-full", ca)


def test_an_sslmode_given_is_kept():
    assert with_verified_tls(REMOTE + "?sslmode=require", "") == REMOTE + "?sslmode=require"


def test_settings_apply_it_to_every_database_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("POSTGRES_CA_FILE", str(ca))
    for name in ("DATABASE_URL", "REPORTS_DATABASE_URL", "WEB_DATABASE_URL", "REPORT_JOB_DATABASE_URL"):
        monkeypatch.setenv(name, REMOTE)
    settings = Settings.from_env()
    for url in (settings.database_url, settings.reports_database_url, settings.web_database_url,
                settings.report_job_database_url):
        assert conninfo_to_dict(url)["sslmode"] == "verify-full"
        assert conninfo_to_dict(url)["sslrootcert"] == str(ca)


def test_a_missing_ca_file_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("POSTGRES_CA_FILE", str(tmp_path / "nowhere.pem"))
    with pytest.raises(SettingError, match="POSTGRES_CA_FILE"):
        Settings.from_env()


def test_jdbc_gets_the_same_verification(tmp_path: Path):
    ca = str(tmp_path / "ca.pem")
    with_file = Jdbc.from_database_url(with_verified_tls(REMOTE, ca)).url
    assert "sslmode=verify-full" in with_file and f"sslrootcert={ca.replace('/', '%2F')}" in with_file
    with_system = Jdbc.from_database_url(with_verified_tls(REMOTE, "")).url
    assert "sslmode=verify-full" in with_system
    assert "sslfactory=org.postgresql.ssl.DefaultJavaSSLFactory" in with_system
    assert "ssl" not in Jdbc.from_database_url("postgresql://app:pw@127.0.0.1:5432/restaurant").url
