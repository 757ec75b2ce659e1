"""schemathesis (from PyPI) against the OpenAPI document a real worker serves: every endpoint it
describes answers as described, with generated good and bad requests, and never with a 5xx
other than the documented 503."""

import re
import subprocess
import sys

import pytest

from infra.scratch import WorkerProcess
from restaurant_app.contract import openapi

pytestmark = pytest.mark.integration

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance")
"""Whatever the request: a documented status, media type, headers and body. (A store the schema
allows may still be unknown, a 400, so ``positive_data_acceptance`` is not among them.)"""
EXAMPLES = 12
"""Generated cases per operation and phase: enough to reach every parameter, a few seconds in all."""


def test_every_documented_endpoint_answers_as_its_openapi_document_says(worker: WorkerProcess, tmp_path):
    worker.start()
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{worker.url}/api/openapi.json",
         "--checks", ",".join(CHECKS), "--max-examples", str(EXAMPLES), "--seed", "20",
         "--workers", "1", "--request-timeout", "20", "--no-shrink", "--wait-for-schema", "30",
         "--report", "junit", "--report-dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False,  # its cache goes there
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    operations = sum(len(methods) for methods in openapi()["paths"].values())
    assert f"Tested: {operations}" in run.stdout, run.stdout[-3000:]  # every operation it describes
    cases = re.search(r"(\d+) generated, (\d+) passed", run.stdout)
    assert cases and cases[1] == cases[2] and int(cases[1]) >= operations * 10, run.stdout[-3000:]
