"""The worker's profile in bench/RESULTS.md: py-spy's samples grouped by layer, shares of the measured CPU."""

from pathlib import Path

from bench.profile import Samples

RAW = """\
<module> (faust/__main__.py:3);run (asyncio/base_events.py:600);select (selectors.py:468) 50
<module> (faust/__main__.py:3);_run_once (asyncio/base_events.py:1922);on_batch (agents/persistence.py:80);\
validate (restaurant_app/validation.py:41);loads (json/decoder.py:337) 30
<module> (faust/__main__.py:3);on_batch (agents/persistence.py:80);store (restaurant_app/order_sink.py:90);\
execute (psycopg/cursor.py:97) 20
<module> (faust/__main__.py:3);_run_once (asyncio/base_events.py:1922);\
getmany (aiokafka/consumer/consumer.py:1200) 10
<module> (faust/__main__.py:3);on_batch (agents/persistence.py:80);inc (prometheus_client/metrics.py:300) 5
<module> (faust/__main__.py:3);_run_once (asyncio/base_events.py:1922);_run (asyncio/events.py:84);\
_add_ack (faust/transport/consumer.py:700) 15
<module> (faust/__main__.py:3);_run_once (asyncio/base_events.py:1922) 10
<module> (faust/__main__.py:3);on_batch (agents/persistence.py:80) 10
<module> (faust/__main__.py:3);_find_and_load (<frozen importlib._bootstrap>:1176);\
<module> (restaurant_app/validation.py:1);_compile_bytecode (<frozen importlib._bootstrap_external>:729) 5
"""


def test_busy_samples_go_to_the_first_layer_from_the_leaf_up_and_idle_ones_are_left_out(tmp_path: Path):
    raw = tmp_path / "profile.txt"
    raw.write_text(RAW)
    samples = Samples.read(raw)
    assert samples.total == 105  # the 50 in select are idle
    assert samples.layers == {"validation": 30, "storage (psycopg, order_sink)": 20,
                              "aiokafka fetch/parse (kafka_records.py)": 10,
                              "metrics (prometheus_client, metrics.py, lean_monitor.py)": 5,
                              "faust stream/consumer/acks (fast_consumer.py, batches.py)": 15,
                              "agent (persistence.py)": 10,
                              "asyncio event loop": 10,  # reached before faust/__main__.py
                              "imports (start-up, lazy imports)": 5}
    rows = {row[0]: row[1:] for row in samples.layer_rows(us_per_order=42.0)}
    assert rows["validation"] == ["29%", "12.0"] and rows["agent (persistence.py)"] == ["10%", "4.0"]
    assert samples.leaf_rows(42.0, top=1) == [["`loads (json/decoder.py:337)`", "28.6%", "12.0"]]
