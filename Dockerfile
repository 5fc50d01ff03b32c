# syntax=docker/dockerfile:1
#
# trivy-digest: the release binary on distroless (glibc, CA certificates, nothing else:
# no shell, no package manager). Runs as the image's nonroot user, 65532:65532.
#
#   docker build -t registry.example.com/trivy-digest:0.1.0 .
#   docker run --rm registry.example.com/trivy-digest:0.1.0 --help
#
# The builder is Debian 12 (bookworm), as the runtime image, so the binary links against
# the same glibc. Versions are pinned by tag; pin them by digest (FROM image:tag@sha256:...)
# where your policy asks for it.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src

# A C compiler for the bundled SQLite and aws-lc; nothing else is needed.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

# Only what the build reads (see .dockerignore).
COPY . .

# The registry and target caches speed up rebuilds; the binary is copied out of the
# cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin trivy-digest \
    && install -D -m 0755 target/release/trivy-digest /out/trivy-digest \
    && install -d -m 0750 /out/data

FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="trivy-digest" \
      org.opencontainers.image.description="Trivy Operator reports, deduplicated by image digest, exported to DefectDojo"

COPY --from=builder /out/trivy-digest /usr/local/bin/trivy-digest
# The working directory holds the store when no config says otherwise
# (trivy-digest.db); the chart mounts a volume at /var/lib/trivy-digest.
COPY --from=builder --chown=65532:65532 /out/data /var/lib/trivy-digest
WORKDIR /var/lib/trivy-digest

USER 65532:65532

# Kubernetes probes /healthz and /readyz itself (see the chart); the image has no shell
# or HTTP client for a Docker health check to run.
HEALTHCHECK NONE

EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/trivy-digest"]
CMD ["run"]
