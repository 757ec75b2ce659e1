"""The benchmark suite: ingest throughput, end-to-end latency and report cost (``make bench``)."""
