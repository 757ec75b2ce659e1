"""The fork server with real processes: a forked command behaves as ``python`` running it would."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from restaurant_app.fork_server import ForkServer, ForkServerGone
from spark_reports.job import MODULES
from tests.services import wait_until

pytestmark = pytest.mark.integration

SHOWS_ITSELF = """
    import json, os, sys
    print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "colour": os.environ.get("COLOUR"),
                      "leads_its_group": os.getpgid(0) == os.getpid()}))
    print("to stderr", file=sys.stderr)
    sys.exit(int(sys.argv[1]))
"""


def script(tmp_path: Path, body: str) -> str:
    path = tmp_path / "command.py"
    path.write_text(textwrap.dedent(body))
    return str(path)


async def test_a_forked_script_sees_and_returns_what_python_running_it_would(tmp_path: Path):
    command = [sys.executable, script(tmp_path, SHOWS_ITSELF), "3", "two words"]
    env = {**os.environ, "COLOUR": "green"}
    server = ForkServer()
    try:
        process = await server.spawn(command, env, cwd=tmp_path)
        stdout, stderr = await process.communicate()
    finally:
        await server.stop()
    python = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, check=False,
                            start_new_session=True)
    assert (process.returncode, stdout, stderr) == (python.returncode, python.stdout, python.stderr)
    assert process.returncode == 3
    assert json.loads(stdout) == {"argv": ["3", "two words"], "cwd": str(tmp_path), "colour": "green",
                                  "leads_its_group": True}


async def test_modules_and_code_run_as_with_python_m_and_c(tmp_path: Path):
    server = ForkServer()
    try:
        module = await server.spawn([sys.executable, "-m", "json.tool"], os.environ, tmp_path)
        crash = await server.spawn([sys.executable, "-c", "raise RuntimeError('no luck')"], os.environ)
        (_, module_err), (_, crash_err) = await asyncio.gather(module.communicate(), crash.communicate())
    finally:
        await server.stop()
    # json.tool reads standard input, which the fork server keeps at /dev/null: nothing to read.
    assert module.returncode == 1 and b"Expecting value" in module_err
    assert crash.returncode == 1
    assert crash_err.decode().splitlines()[-1] == "RuntimeError: no luck"
    assert crash_err.startswith(b"Traceback (most recent call last):")


async def test_a_forked_command_starts_with_the_preloaded_modules():
    server = ForkServer(preload=MODULES)
    check = "import sys; print('pandas' in sys.modules)"  # pyspark's client imports pandas
    try:
        process = await server.spawn([sys.executable, "-c", check], os.environ)
        stdout, _ = await process.communicate()
        fresh = await asyncio.create_subprocess_exec(sys.executable, "-c", check,
                                                     stdout=asyncio.subprocess.PIPE)
        fresh_stdout, _ = await fresh.communicate()
    finally:
        await server.stop()
    assert (stdout, fresh_stdout) == (b"True\n", b"False\n")


async def test_a_killed_command_reports_the_signal_and_its_group_goes_with_it(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    starts_a_child = f"""
        import subprocess, time
        child = subprocess.Popen(["sleep", "300"])
        open({str(pid_file)!r}, "w").write(str(child.pid))
        time.sleep(300)
    """
    server = ForkServer()
    try:
        process = await server.spawn([sys.executable, script(tmp_path, starts_a_child)], os.environ)
        assert await asyncio.to_thread(wait_until, lambda: pid_file.exists() and pid_file.read_text(), 10)
        os.killpg(process.pid, signal.SIGKILL)
        assert await process.wait() == -signal.SIGKILL
        assert await asyncio.to_thread(wait_until, lambda: not psutil.pid_exists(int(pid_file.read_text()))
                                       or psutil.Process(int(pid_file.read_text())).status() == "zombie", 10)
    finally:
        await server.stop()


async def test_when_the_server_dies_waiting_fails_and_the_next_command_starts_a_new_one(tmp_path: Path):
    server = ForkServer()
    try:
        sleeper = await server.spawn([sys.executable, "-c", "import time; time.sleep(300)"], os.environ)
        first = await server.start()
        os.kill(first, signal.SIGKILL)
        with pytest.raises(ForkServerGone):
            await asyncio.wait_for(sleeper.wait(), 10)
        again = await server.spawn([sys.executable, "-c", "print('again')"], os.environ)
        assert (await again.communicate())[0] == b"again\n"
        assert await server.start() != first
    finally:
        os.kill(sleeper.pid, signal.SIGKILL)
        await server.stop()


async def test_the_server_ends_when_its_client_closes_the_socket_and_leaves_its_forks_running():
    server = ForkServer()
    sleeper = await server.spawn([sys.executable, "-c", "import time; time.sleep(300)"], os.environ)
    process = server.process
    assert process is not None
    try:
        await server.stop()
        assert process.returncode == 0
        assert psutil.Process(sleeper.pid).ppid() != process.pid  # adopted by another process
    finally:
        os.kill(sleeper.pid, signal.SIGKILL)


async def test_a_command_whose_caller_stopped_waiting_during_the_start_is_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "slow_to_import.py").write_text("import time\ntime.sleep(2)\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    server = ForkServer(preload=["slow_to_import"])
    try:
        spawning = asyncio.create_task(
            server.spawn([sys.executable, "-c", "import time; time.sleep(300)"], os.environ))
        await asyncio.sleep(0.5)  # the server is still importing
        spawning.cancel()
        with pytest.raises(asyncio.CancelledError):
            await spawning
        fork_server = psutil.Process(await server.start())
        await asyncio.sleep(3)  # past the import: the server forks the command, which is killed
        assert [child.status() for child in fork_server.children()] in ([], ["zombie"])
    finally:
        await server.stop()


async def test_commands_started_at_once_share_one_server_and_each_gets_its_own_end():
    server = ForkServer()
    try:
        processes = await asyncio.gather(*(
            server.spawn([sys.executable, "-c", f"raise SystemExit({code})"], os.environ)
            for code in range(20)))
        codes = await asyncio.gather(*(process.wait() for process in processes))
        servers = [child.pid for child in psutil.Process().children()
                   if "restaurant_app.fork_server" in child.cmdline()]
    finally:
        await server.stop()
    assert codes == list(range(20))
    assert servers == [server.process.pid]
