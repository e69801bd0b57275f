# syntax=docker/dockerfile:1
# Barbican in a container: `docker build -t barbican .` then `docker run -p 8080:8080 barbican`
# serves the embedded default page. With a config of your own:
#   docker run -p 8080:8080 -v "$PWD/barbican.yaml:/etc/barbican/barbican.yaml:ro" barbican \
#     run --config /etc/barbican/barbican.yaml
# The embedded default binds the admin listener to 127.0.0.1:9901, which a published port cannot
# reach; to publish 9901, bind admin to 0.0.0.0:9901 in your config (and set its tokens).

FROM rust:1-slim-bookworm AS builder
# The binary is built profile-guided (pgo/build.sh): built instrumented, run on a training load,
# built again with the counts. The load needs curl, openssl (its TLS part) and a CRS to inspect
# with (Debian's 3.3.4); the counts are merged with the toolchain's llvm-profdata.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl openssl modsecurity-crs \
    && rm -rf /var/lib/apt/lists/* \
    && rustup component add llvm-tools
WORKDIR /src
# Everything the manifest names: src, benches (the [[bench]] target must exist), tests; see
# .dockerignore for what stays out. The cache mounts keep the registry and target/ between builds.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    install -D -m 0755 "$(pgo/build.sh | tail -n 1)" /out/barbican

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 barbican \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin barbican
COPY --from=builder /out/barbican /usr/local/bin/barbican
WORKDIR /etc/barbican
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001
EXPOSE 8080 9901
ENTRYPOINT ["barbican"]
CMD ["run"]
