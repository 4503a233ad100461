# anthropic-work-exporter: small, non-root, no secrets inside.
#   docker build -t anthropic-work-exporter .
#   docker run -p 9723:9723 -v $PWD/config.yaml:/etc/anthropic-work-exporter/config.yaml:ro \
#     -e ANTHROPIC_ENVIRONMENT_KEY anthropic-work-exporter
FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin exporter
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
EXPOSE 9723
# Liveness, with what the image already has (no curl in slim images).
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9723/-/healthy', timeout=4)"]
ENTRYPOINT ["anthropic-work-exporter"]
CMD ["--config.file=/etc/anthropic-work-exporter/config.yaml", "--web.listen-address=:9723"]
