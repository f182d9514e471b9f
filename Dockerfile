# syntax=docker/dockerfile:1
# One image for every Vigie service (docker-compose.yml runs `vigie predict`, `vigie drift`,
# `vigie trainer` and `vigie bootstrap` from it).

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# librdkafka and SQLite are built from source (rdkafka's and sqlx's bundled copies).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vigie \
    && cp target/release/vigie /usr/local/bin/vigie

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/vigie vigie
COPY --from=build /usr/local/bin/vigie /usr/local/bin/vigie
# The model specs and the data they train from (the trainer retrains from them).
COPY models /app/models
COPY data /app/data
WORKDIR /app
ENV VIGIE_HOME=/var/lib/vigie \
    VIGIE_LOG_FORMAT=json
USER vigie
EXPOSE 8000 8001 8002
ENTRYPOINT ["vigie"]
CMD ["--help"]
