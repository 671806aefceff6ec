# shiftgate's container image, for machines with Docker or Podman:
#   docker build --build-arg SHIFTGATE_GIT_COMMIT="$(git rev-parse HEAD)" -t shiftgate:0.1.0 .
# scripts/image builds the same image without a container engine (the CI checks that one).
# Runtime: distroless with glibc (`cc`), non-root uid 65532, no shell, no package manager.

# --- build -----------------------------------------------------------------------
FROM docker.io/library/rust:1.89-bookworm AS build
WORKDIR /src
# .dockerignore leaves .git out: the commit comes in as a build argument (build.rs reads
# it; without it `--version` says "commit unknown").
ARG SHIFTGATE_GIT_COMMIT=""
ENV SHIFTGATE_GIT_COMMIT=${SHIFTGATE_GIT_COMMIT}
COPY . .
RUN cargo build --release --locked --bin shiftgate \
 && install -D -m 0755 target/release/shiftgate /out/usr/local/bin/shiftgate

# --- runtime ---------------------------------------------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
ARG SHIFTGATE_GIT_COMMIT=""
LABEL org.opencontainers.image.title="shiftgate" \
      org.opencontainers.image.description="Progressive-delivery engine: shifts traffic to a canary in steps, judged from Prometheus" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.revision="${SHIFTGATE_GIT_COMMIT}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/ /
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/shiftgate"]
CMD ["daemon"]
