"""The fast tier starts no service: the rule in conftest.py holds for a test written against it."""

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py").read_text()
PROJECT_ROOT = Path(__file__).parent.parent


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(f"[pytest]\npythonpath = {PROJECT_ROOT}\nasyncio_default_fixture_loop_scope = function\n"
                     "markers =\n    integration: real services\n")
    return pytester


def test_a_fast_test_that_starts_a_service_fails_with_the_reason(suite: pytest.Pytester):
    suite.makepyfile(test_starts="""
        import subprocess, sys
        def test_starts_the_stack():
            subprocess.run([sys.executable, "-m", "infra", "run"], check=True)
    """)
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*starts a service*not marked integration*"])


def test_a_fast_test_asking_for_the_stack_is_refused_at_collection(suite: pytest.Pytester):
    suite.makepyfile(test_asks="def test_uses_the_stack(stack):\n    pass\n")
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*start services but are not marked integration*", "*test_uses_the_stack*"])


def test_an_integration_test_may_start_one_and_a_fast_one_may_run_a_plain_program(suite: pytest.Pytester):
    suite.makepyfile(test_allowed=f"""
        import subprocess, sys
        import pytest

        @pytest.mark.integration
        def test_marked():
            subprocess.run([sys.executable, "-m", "infra", "--help"], cwd={str(PROJECT_ROOT)!r},
                           capture_output=True, check=True)

        def test_plain_program():
            subprocess.run([sys.executable, "-c", "pass"], check=True)
    """)
    # In a process of its own: this test's own guard would refuse the marked test's service.
    suite.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)
