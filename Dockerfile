# phasebook: multi-stage build. The builder compiles the release binary; the runtime
# image carries only that binary, CA certificates (Cal.com is HTTPS) and a non-root user.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# Without the default `demo` feature: the image ships no Cal.com emulator.
RUN cargo build --release --locked -p phasebook-api --no-default-features --bin phasebook \
    && cp target/release/phasebook /usr/local/bin/phasebook

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system phasebook \
    && useradd --system --gid phasebook --home-dir /var/lib/phasebook --create-home phasebook
COPY --from=builder /usr/local/bin/phasebook /usr/local/bin/phasebook
USER phasebook
WORKDIR /var/lib/phasebook
# The SQLite default lives in the working directory (mount a volume there to keep it);
# set PHASEBOOK_DATABASE_URL=postgres://… for PostgreSQL.
ENV PHASEBOOK_LISTEN=0.0.0.0:8080 \
    PHASEBOOK_DATABASE_URL=sqlite:///var/lib/phasebook/phasebook.db \
    PHASEBOOK_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["phasebook"]
CMD ["serve"]
