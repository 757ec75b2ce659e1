# The dashboard's chart library, installed from package-lock.json as `make setup` does.
FROM node:20-bookworm-slim AS browser-libraries
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install --yes --no-install-recommends openjdk-17-jre-headless maven \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
COPY --from=browser-libraries /app/node_modules ./node_modules
RUN pip install --no-cache-dir --constraint constraints.txt --editable . \
    && mvn --quiet --batch-mode -f infra/pom.xml dependency:copy-dependencies \
       -DoutputDirectory=/app/.stack/jars -DincludeScope=runtime
EXPOSE 6066
CMD ["faust", "-A", "restaurant_app", "worker", "-l", "info"]
