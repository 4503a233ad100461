# anthropic-work-exporter: small, non-root, no secrets inside.
#   docker build -t anthropic-work-exporter .
#   docker run -p 9723:9723 -v $PWD/config.yaml:/etc/anthropic-work-exporter/config.yaml:ro \
#     -e ANTHROPIC_ENVIRONMENT_KEY anthropic-work-exporter
# scripts/test-image.sh builds and runs it in CI.
FROM python:3.12-slim AS build
WORKDIR /src
# Dependencies first, from the lock alone (every version pinned, every file's hash checked;
# scripts/lock.sh makes it from pyproject.toml): this layer is rebuilt only when they change.
COPY requirements/image.lock ./
RUN pip install --no-cache-dir --disable-pip-version-check --require-hashes --no-deps --target /deps \
      -r image.lock
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip install --no-cache-dir --disable-pip-version-check --no-deps --target /app .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin exporter
# Installed files only, no wheels: the dependencies' layer is reused while they stay the same.
COPY --from=build /deps /opt/anthropic-work-exporter
COPY --from=build /app /opt/anthropic-work-exporter
ENV PYTHONPATH=/opt/anthropic-work-exporter PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 9723
# Follows the exporter's own --web.listen-address and --web.config.file (TLS, basic auth).
HEALTHCHECK --interval=30s --timeout=5s --start-period=5s --retries=3 \
  CMD ["python", "-m", "exporter.healthcheck"]
# The defaults for a container: every interface (the runtime publishes the port or not)
# and the config where the run mounts it. Flags after the image name come later and win.
ENTRYPOINT ["python", "-m", "exporter", "--web.listen-address=:9723", \
            "--config.file=/etc/anthropic-work-exporter/config.yaml"]
