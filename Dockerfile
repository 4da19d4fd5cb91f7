# One image for every service; the command picks the service:
#   docker run IMAGE python -m services.recorder
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    QJT_HTTP_HOST=0.0.0.0
WORKDIR /app

COPY pyproject.toml README.md ./
COPY qjt ./qjt
COPY services ./services
RUN pip install . && useradd --system --uid 10001 --home /app qjt
USER qjt

CMD ["python", "-m", "services.api"]
