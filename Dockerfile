# The `switchboard` binary: one image for edges, routers and archivers.
#
#   docker build -t switchboard .
#   docker run --rm switchboard --help

# ---- build -------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src

# Only what the build needs: the workspace manifests, the lock file, and
# the crates' sources (the edge's web pages are compiled into the binary).
COPY Cargo.toml Cargo.lock ./
COPY protocol protocol
COPY config config
COPY bus bus
COPY edge edge
COPY router router
COPY archiver archiver
COPY analytics analytics
COPY switchboard switchboard
# The test crate is a workspace member: cargo needs its manifest and sources
# to load the workspace, even though it is not built here.
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
EXPOSE 8080
ENTRYPOINT ["switchboard"]
CMD ["--help"]
