# Two commands do everything: `make run` and `make test`. The rest are their parts.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
JARS := .stack/jars/.fetched
NODE_MODULES := node_modules/.installed

.PHONY: setup run check test compose-check bench lint psql clean

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

test: setup
	$(PY) -m pytest -m "not compose"

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
