"""The latency bench's cores busy while publishing, read from real processes (``busy_cores``)."""

import subprocess
import sys
import time
from types import SimpleNamespace

import psutil

from bench.latency import busy_cores

SPIN = "import time\nend = time.process_time() + 0.4\nwhile time.process_time() < end: pass"


def test_busy_cores_counts_each_process_and_the_producer_it_waited_for():
    spinner = subprocess.Popen([sys.executable, "-c", SPIN + "\ntime.sleep(30)"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        stack = SimpleNamespace(postgres_process=lambda: psutil.Process(idle.pid),
                                kafka_process=lambda: psutil.Process(idle.pid))
        worker = SimpleNamespace(pid=spinner.pid)
        with busy_cores(stack, worker) as cores:  # type: ignore[arg-type]
            assert cores == {}, "filled in only when the block ends"
            subprocess.run([sys.executable, "-c", SPIN], check=True)  # the producer, waited for
            time.sleep(0.5)  # the worker's spinning ends within the block
    finally:
        spinner.kill()
        idle.kill()
    # 0.4 CPU-s each over a block of about 1 s (2 s on a loaded machine); the sleeper's is near 0
    assert cores["worker"] > 0.1 and cores["producer"] > 0.1, cores
    assert cores["postgres"] < 0.05 and cores["kafka"] < 0.05, cores
    assert cores["all"] == sum(value for name, value in cores.items() if name != "all")
