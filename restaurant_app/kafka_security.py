"""How every Kafka client of the product connects: TLS, SASL and the files that hold their secrets.

``Settings.kafka_security`` (``KAFKA_SECURITY_PROTOCOL``, ``KAFKA_SASL_*``, ``KAFKA_SSL_*``) is one
``KafkaSecurity``; ``client_options()`` turns it into aiokafka's keyword arguments (the probe, the
admin clients, the bench's consumers) and ``restaurant_app.kafka_transport.broker_credentials``
into Faust's (the worker's consumer and producer, ``produce-orders``, ``POST /api/orders``).
The password is read from its file each time a client is made, never kept in the settings, so
no ``repr`` or log line of the settings can show it.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
"""``KAFKA_SECURITY_PROTOCOL``'s values, as Kafka names them; the first is the default."""
MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")
"""``KAFKA_SASL_MECHANISM``'s values; the first is the default."""


@dataclass(frozen=True)
class KafkaSecurity:
    """A Kafka client's security protocol, SASL login and TLS files; the default is plain TCP."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str = MECHANISMS[0]
    sasl_username: str = ""
    sasl_password_file: Path | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def password(self) -> str:
        """The SASL password, read now from its file (its last line break left out)."""
        if self.sasl_password_file is None:
            return ""
        return self.sasl_password_file.read_text().rstrip("\r\n")

    def ssl_context(self) -> ssl.SSLContext | None:
        """A context that verifies the brokers' certificates and host names (against the CA file,
        else the system's), presenting the client certificate if one is set; None without TLS."""
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile is not None:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client: producer, consumer, admin or bare client."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.password())
        return options


PLAINTEXT = KafkaSecurity()
