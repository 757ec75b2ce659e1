"""The local stack: Apache Kafka, PostgreSQL and a Spark Connect server as plain processes."""
