# Citadel server image: the citadel binary, and the sample game's combat
# plugin built into the plugin folder the binary is pointed at (the server
# cannot build it at start: the image has no Go toolchain and no source).
# Build from the repository root:  docker build -t citadel .
# docs/deploy.md explains the image; deploy_test.go runs the
# same go build lines and checks that they give static binaries.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/citadel ./cmd/citadel
# <plugins>/<name>/<build>: the layout the plugin host loads (docs/plugins.md).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /out/plugins/combat/v1 ./plugins/examples/combat/v1
# The data directory (-data) must exist and belong to the user the server runs as.
RUN mkdir -p /out/data

# Static binaries only: no shell, no package manager, CA certificates and
# /tmp (plugin sockets) included; the user is nonroot (65532).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/citadel /usr/local/bin/citadel
COPY --from=build /out/plugins /opt/citadel/plugins
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
# login HTTP, gate TCP, gate WebSocket, admin HTTP (/healthz /readyz /metrics)
EXPOSE 8000 7000 7001 8080
# Where this image keeps things; roles, addresses and secrets come as
# further flags (compose command:, Kubernetes args:), secrets as files.
ENTRYPOINT ["/usr/local/bin/citadel", "-data", "/data", "-plugins", "/opt/citadel/plugins", "-build-plugins=false"]
