# J4's container image: build with the Swift toolchain, run on slim Debian.
#   docker build -t j4 .
#   docker run --rm j4 --help
# A user's own scenario package builds the same way: copy this file next to its
# Package.swift and set PRODUCT to its executable (see deploy/README.md).
# The toolchain J4 is developed and tested with (6.3); an older one may not build it.
ARG SWIFT_IMAGE=swift:6.3-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${SWIFT_IMAGE} AS build
ARG PRODUCT=j4
RUN apt-get update && apt-get install -y --no-install-recommends libhiredis-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN swift build -c release --product "${PRODUCT}" --static-swift-stdlib \
    && mkdir /out && cp "$(swift build -c release --show-bin-path)/${PRODUCT}" /out/j4

FROM ${RUNTIME_IMAGE}
# What the binary built with --static-swift-stdlib still loads (ldd on Debian 12): libc,
# libm, libgcc_s, libz (all in the slim image), libstdc++ and hiredis 0.14; plus CA
# certificates for https targets and time zone data for Foundation.
RUN apt-get update && apt-get install -y --no-install-recommends libhiredis0.14 libstdc++6 ca-certificates tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin j4
COPY --from=build /out/j4 /usr/local/bin/j4
USER 10001
# Prometheus metrics, /healthz and /readyz when started with --metrics-port 9464.
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/j4"]
CMD ["--help"]
