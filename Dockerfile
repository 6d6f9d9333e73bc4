# hookstream: one image for every role (api, worker, topics), chosen by command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir . && useradd --system --uid 10001 hookstream
USER hookstream

ENTRYPOINT ["hookstream"]
CMD ["worker"]
