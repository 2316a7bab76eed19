# The `switchboard` binary: one image for edges, routers and archivers.
#
#   docker build -t switchboard .
#   docker run --rm switchboard --help

# ---- build -------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# Cargo loads the whole workspace before building one package, so every
# member of `members` in Cargo.toml is copied (tests/deploy_files.rs checks
# it): the crates the binary is built from whole (the edge's web pages are
# compiled into it), the others' manifests and sources. The test crate's
# integration tests and browser harness are left out.
COPY Cargo.toml Cargo.lock ./
COPY protocol protocol
COPY config config
COPY metrics metrics
COPY bus bus
COPY edge edge
COPY router router
COPY archiver archiver
COPY analytics analytics
COPY switchboard switchboard
COPY bench bench
COPY bots/faq bots/faq
COPY tests/Cargo.toml tests/Cargo.toml
COPY tests/src tests/src

RUN cargo build --release --locked -p switchboard

# ---- run ---------------------------------------------------------------
FROM debian:bookworm-slim

# ca-certificates for TLS to MongoDB or NATS; curl for container health checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid switchboard --home-dir /nonexistent \
       --no-create-home --shell /usr/sbin/nologin switchboard \
    && mkdir -p /etc/switchboard

COPY --from=builder /src/target/release/switchboard /usr/local/bin/switchboard

USER switchboard:switchboard
WORKDIR /etc/switchboard
# 8080: an edge's HTTP and WebSocket listener (edge.listen);
# 9091: metrics.listen of routers and archivers (/metrics, /healthz).
EXPOSE 8080 9091
ENTRYPOINT ["switchboard"]
CMD ["--help"]
