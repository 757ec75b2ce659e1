# Two commands do everything: `make run` and `make test`. The rest are their parts.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
JARS := .stack/jars/.fetched

.PHONY: setup run test bench lint psql clean

setup: $(INSTALLED) $(JARS)

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

run: setup
	$(PY) -m infra run

test: setup
	$(PY) -m pytest

bench: setup
	$(PY) -m bench

psql: setup
	$(PY) -m infra psql

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) .stack/jars
