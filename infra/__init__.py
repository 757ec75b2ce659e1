"""The local stack: an Apache Kafka broker and a PostgreSQL server as plain processes."""
