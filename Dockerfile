# Palleto: a static, non-root image.
#   docker build -t palleto .
#   docker run --rm palleto run --help
# The build stage runs the same `go build` the tests run (TestDockerfileBuildStage runs the
# RUN lines below without Docker and checks the binary is static).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/palleto ./cmd/palleto
RUN mkdir -p /out/data/out && /out/palleto version

# distroless/static: CA certificates and tzdata, no shell, user 65532 (nonroot).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/palleto /usr/local/bin/palleto
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/palleto"]
CMD ["help"]
