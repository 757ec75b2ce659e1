# Two commands do everything: `make run` and `make test`. The rest are their parts.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
JARS := .stack/jars/.fetched
NODE_MODULES := node_modules/.installed

PROMTOOL := .stack/bin/promtool
# promtool of Prometheus 3, by its Go module version (github.com/prometheus/prometheus v0.316.0)
PROMTOOL_VERSION := v0.316.0

.PHONY: setup run check test rules compose-check bench lint psql clean

setup: $(INSTALLED) $(JARS) $(NODE_MODULES)

$(INSTALLED): setup.cfg pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet --constraint constraints.txt --editable '.[dev]'
	touch $@

$(JARS): infra/pom.xml
	@command -v mvn >/dev/null || { echo "Maven (mvn) is needed to fetch Kafka and the JDBC driver"; exit 1; }
	mvn --quiet --batch-mode -f infra/pom.xml dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/.stack/jars -DincludeScope=runtime
	touch $@

# The dashboard's chart library, pinned in package-lock.json and served from node_modules/.
$(NODE_MODULES): package.json package-lock.json
	@command -v npm >/dev/null || { echo "Node.js and npm are needed for the dashboard's chart library"; exit 1; }
	npm ci --no-audit --no-fund
	touch $@

run: setup
	$(PY) -m infra run

# The fast tier: lint and every test that starts no service (tests/conftest.py enforces it).
check: $(INSTALLED) $(NODE_MODULES)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -m "not integration" -q

# Two pytest processes, each with its own Kafka and PostgreSQL, take whole test files
# (`--dist loadfile`), the longest first (tests/conftest.py), so their waits overlap.
test: setup rules
	$(PY) -m pytest -n 2 --dist loadfile -m "not compose" --durations=25

# The alert rules (ops/prometheus/alerts.yml), checked and tested by promtool, built with Go once.
rules: $(PROMTOOL)
	$(PROMTOOL) check rules ops/prometheus/alerts.yml
	cd ops/prometheus && $(CURDIR)/$(PROMTOOL) test rules alerts.test.yml

$(PROMTOOL):
	@command -v go >/dev/null || { echo "Go is needed to build promtool, which tests the alert rules"; exit 1; }
	GOBIN=$(CURDIR)/.stack/bin go install github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

# docker-compose.yml as containers: engine, Compose and images set up when missing (compose/check.sh).
compose-check: setup
	compose/check.sh

bench: setup
	$(PY) -m bench

psql: setup
	$(PY) -m infra psql

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .stack/jars node_modules
