# The pipeline's image. docker-compose.yml runs it as the Faust worker and, from the pyspark it
# installs, as the Spark master, the Spark worker and the Spark Connect server.
# Its install steps are the Makefile's (same constraint file, pom and lock file);
# tests/test_compose.py checks that they stay so.
# The base images are build arguments only so that `make compose-check` can build on a machine
# that cannot pull them (docs/docker-compose.md); by default they are the official images.
ARG NODE_IMAGE=node:20.20.2-bookworm-slim
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# The dashboard's chart library, from package-lock.json as `make setup` does; --omit=dev leaves
# out the tools only the tests use (dclint, for the Compose schema).
FROM ${NODE_IMAGE} AS browser-libraries
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

# The jars, fetched by Maven as `make setup` does: the PostgreSQL JDBC driver that Spark needs
# (and the Kafka jars `make run` uses, which the same pom lists). Maven stays in this stage.
# The same Debian as the final stage, so as not to pull another base image.
FROM ${PYTHON_IMAGE} AS jars
RUN apt-get update \
    && apt-get install --yes --no-install-recommends maven \
    && rm -rf /var/lib/apt/lists/*
ENV JARS_DIR=/opt/restaurant/jars
COPY infra/pom.xml infra/pom.xml
RUN mvn --quiet --batch-mode -f infra/pom.xml dependency:copy-dependencies \
        -DoutputDirectory=${JARS_DIR} -DincludeScope=runtime

FROM ${PYTHON_IMAGE}
# Java for Spark. tini runs as PID 1: it forwards signals and reaps the processes whose parents
# die first (the report job's Spark JVM, Spark's executors), which a plain PID 1 would not.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends openjdk-17-jre-headless tini \
    && rm -rf /var/lib/apt/lists/*
# Nothing runs as root: a user of its own, which may write only its data folder (DATA_DIR:
# Faust's state, the Spark worker's scratch space). The code stays read-only to it.
RUN useradd --system --create-home --uid 10001 --user-group app \
    && install --directory --owner app --group app /var/lib/restaurant
ENV JARS_DIR=/opt/restaurant/jars \
    DATA_DIR=/var/lib/restaurant \
    PYTHONUNBUFFERED=1
COPY --from=jars ${JARS_DIR} ${JARS_DIR}
WORKDIR /app
COPY . .
COPY --from=browser-libraries /app/node_modules ./node_modules
# Editable, as in the Makefile: the code finds node_modules/ and its migrations beside itself.
RUN pip install --no-cache-dir --constraint constraints.txt --editable .
USER app
EXPOSE 6066
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["faust", "-A", "restaurant_app", "worker", "-l", "info"]
