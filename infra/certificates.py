"""A small certificate authority, made with ``openssl`` on first start and kept. ``make run``'s
(``DATA_DIR/ca``) signs the secure Kafka's and the Spark Connect TLS front's certificates, so that
a client on another machine trusts both with one file (``ca.pem``); compose's signs its services'.

The folder is its owner's only (0700, every file 0600); the CA's key never leaves it.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from infra.java import StackError
from restaurant_app.settings import is_ip_address

CERTIFICATE_DAYS = "3650"


def subject_alt_names(hosts: Sequence[str]) -> str:
    """The ``subjectAltName`` of a certificate for ``hosts``: IP entries for addresses, DNS
    entries for names."""
    return ",".join(f"IP:{name}" if is_ip_address(name) else f"DNS:{name}" for name in dict.fromkeys(hosts))


def url_host(host: str) -> str:
    """``host`` as a URL holds it: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


class CertificateAuthority:
    """The CA in ``home``: ``ca.pem`` (its certificate, for clients to trust) and ``ca.key``.

    ``former``: a folder that may hold an older CA of the same two files (the secure Kafka's,
    before this one was shared), taken over so that clients that trust it keep working.
    """

    def __init__(self, home: Path, former: Path | None = None) -> None:
        self.home = home
        self.former = former
        self.ca_file = home / "ca.pem"
        self.key_file = home / "ca.key"

    def ensure(self) -> None:
        """Make the CA unless it exists."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        if self.ca_file.exists() and self.key_file.exists():
            return
        if self.former and (self.former / "ca.pem").exists() and (self.former / "ca.key").exists():
            for name, path in (("ca.pem", self.ca_file), ("ca.key", self.key_file)):
                write_private(path, (self.former / name).read_text())
            return
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key_file,
                "-out", self.ca_file, "-days", CERTIFICATE_DAYS, "-subj", "/CN=restaurant-sales CA",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        for path in (self.ca_file, self.key_file):
            path.chmod(0o600)

    def issue(self, keystore: Path, subject: str, hosts: Sequence[str], *, client: bool = False) -> None:
        """Write to ``keystore`` (0600) a new key and its certificate, signed by this CA, for a
        server reached as ``hosts`` (and a client of its peers if ``client``)."""
        self.ensure()
        work = keystore.with_name(f"{keystore.name}.work")
        work.mkdir(mode=0o700, exist_ok=True)
        key, request, certificate, extensions = (work / name for name in ("key", "csr", "crt", "ext"))
        usage = "serverAuth,clientAuth" if client else "serverAuth"
        extensions.write_text(f"subjectAltName={subject_alt_names(hosts)}\n"
                              f"extendedKeyUsage={usage}\n"
                              "keyUsage=critical,digitalSignature,keyEncipherment\n")
        try:
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", request, "-subj", subject)
            openssl("x509", "-req", "-in", request, "-CA", self.ca_file, "-CAkey", self.key_file,
                    "-CAcreateserial", "-out", certificate, "-days", CERTIFICATE_DAYS, "-extfile", extensions)
            write_private(keystore, key.read_text() + certificate.read_text())
        finally:
            for path in work.iterdir():
                path.unlink()
            work.rmdir()
        serial = self.ca_file.with_suffix(".srl")
        if serial.exists():
            serial.chmod(0o600)


    def ensure_issued(self, keystore: Path, subject: str, hosts: Sequence[str], *, client: bool = False
                      ) -> bool:
        """Issue ``keystore`` anew unless it holds a certificate of this CA for every one of
        ``hosts``; return whether it did."""
        self.ensure()
        if (keystore.exists() and self.signed(keystore)
                and {canonical_host(host) for host in hosts} <= set(certificate_hosts(keystore))):
            return False
        self.issue(keystore, subject, hosts, client=client)
        return True

    def signed(self, keystore: Path) -> bool:
        """Whether the certificate in ``keystore`` was signed by this CA."""
        result = subprocess.run(["openssl", "verify", "-CAfile", str(self.ca_file), str(keystore)],
                                capture_output=True, text=True, check=False)
        return result.returncode == 0


def canonical_host(host: str) -> str:
    """``host`` as ``certificate_hosts`` gives it: an address in its shortest form (openssl
    writes an IPv6 one in full, FD00:0:0:0:0:0:0:2), a name as it is."""
    return ipaddress.ip_address(host).compressed if is_ip_address(host) else host


def certificate_hosts(keystore: Path) -> list[str]:
    """The names and addresses the certificate in ``keystore`` holds (its subjectAltName),
    addresses in their shortest form."""
    result = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(keystore)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"openssl could not read the certificate in {keystore}:\n{result.stderr}")
    entries = result.stdout.splitlines()[-1].split(",")
    return [canonical_host(entry.strip().split(":", 1)[1]) for entry in entries if ":" in entry]


def openssl(*args: str | Path) -> None:
    result = subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"openssl {args[0]} failed while making certificates:\n{result.stderr}")


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to a new file only its owner may read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
