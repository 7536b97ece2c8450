# chatroom: multi-stage build. The builder compiles a release binary; the runtime image holds only
# that binary, CA certificates and an unprivileged user.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
# Dependencies first, so that editing the app does not rebuild them: build once against stub sources.
COPY Cargo.toml Cargo.lock clippy.toml ./
COPY entity/Cargo.toml entity/Cargo.toml
COPY migration/Cargo.toml migration/Cargo.toml
COPY bench/Cargo.toml bench/Cargo.toml
# The Engine.IO layer is a dependency of socketioxide (through the [patch]): it is copied whole, since a
# stub would not build socketioxide.
COPY crates crates
RUN mkdir -p src entity/src migration/src bench/src routes frontend tests \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs entity/src/lib.rs migration/src/lib.rs \
 && echo 'fn main() {}' > bench/src/main.rs \
 && echo 'fn main() {}' > tests/integration.rs \
 && cargo build --release --locked \
 && rm -rf src entity/src migration/src bench/src routes tests
COPY . .
# Make sure cargo sees the real sources as newer than the stubs.
RUN touch src/main.rs src/lib.rs entity/src/lib.rs migration/src/lib.rs \
 && cargo build --release --locked --bin chatroom

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data chatroom \
 && mkdir -p /data && chown chatroom /data
COPY --from=builder /src/target/release/chatroom /usr/local/bin/chatroom
USER chatroom
ENV CHATROOM_DATA_DIR=/data \
    CHATROOM_HOST=0.0.0.0 \
    CHATROOM_PORT=9090 \
    CHATROOM_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/chatroom"]
