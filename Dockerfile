# syntax=docker/dockerfile:1.7
# Tern's container images, from one build of the workspace (docs/decisions/0013):
#   --target function --build-arg FUNCTION=<name>   one image per function (what Knative runs)
#   --target edge                                   `tern edge`: router, event delivery, scheduler
#                                                   (the local container check only)
#   --target pubsub-emulator                        Google's pstest fake (the local check only)
# scripts/containers and the images workflow build them; base images are pinned by digest (Renovate/Dependabot bump them).

ARG RUST_IMAGE=docker.io/library/rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG GO_IMAGE=docker.io/library/golang:1.26-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d
# glibc, libgcc, CA certificates and /etc/passwd with nonroot (65532); no shell, no package manager.
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

# ---- one release build of every binary; registry and target dir cached between builds ----
# checkov:skip=CKV_DOCKER_7:Every base comes from an ARG above, pinned by digest (checkov does not resolve ARGs); tests/tests/containers.rs checks the pins.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock routes.toml ./
COPY shared shared
COPY functions functions
COPY migrations migrations
COPY tests tests
COPY bench bench
RUN --mount=type=cache,id=tern-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=tern-target,target=/src/target \
    cargo build --release --locked --workspace --bins \
 && mkdir -p /out \
 && find target/release -maxdepth 1 -type f -perm -u+x -exec cp {} /out/ \;

FROM ${GO_IMAGE} AS go-build
WORKDIR /src/tools
COPY tools/go.mod tools/go.sum ./
COPY tools/pubsub-emulator pubsub-emulator
RUN --mount=type=cache,id=tern-go-mod,target=/go/pkg/mod \
    --mount=type=cache,id=tern-go-build,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -o /out/pubsub-emulator ./pubsub-emulator

# ---- a function: one binary, non-root, nothing writable needed ----
# The labels name the source (scripts/source-hash), never the commit: the same source keeps the
# same digest; the provenance attestation records the commit that built it.
FROM ${RUNTIME_IMAGE} AS function
ARG FUNCTION
ARG SOURCE_HASH=unknown
LABEL org.opencontainers.image.source="https://github.com/tern-platform/tern" \
      dev.tern.source-hash="${SOURCE_HASH}" \
      org.opencontainers.image.title="tern-${FUNCTION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/${FUNCTION} /function
# Knative sets PORT; the runtime logs Cloud Logging JSON and binds 0.0.0.0.
ENV TERN_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
HEALTHCHECK NONE
ENTRYPOINT ["/function"]

# ---- `tern edge` with the route table ----
FROM ${RUNTIME_IMAGE} AS edge
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/tern-platform/tern" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.title="tern-edge"
COPY --from=build /out/tern /tern
COPY routes.toml /etc/tern/routes.toml
ENV TERN_ROUTES=/etc/tern/routes.toml
USER 65532:65532
EXPOSE 8080
HEALTHCHECK NONE
ENTRYPOINT ["/tern", "edge"]

# ---- the Pub/Sub emulator (pstest) for the local container check ----
FROM ${RUNTIME_IMAGE} AS pubsub-emulator
ARG REVISION=unknown
LABEL org.opencontainers.image.source="https://github.com/tern-platform/tern" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.title="tern-pubsub-emulator"
COPY --from=go-build /out/pubsub-emulator /pubsub-emulator
USER 65532:65532
EXPOSE 8085
HEALTHCHECK NONE
ENTRYPOINT ["/pubsub-emulator", "--addr", "0.0.0.0:8085"]
