# Image for the web and worker services of docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps . && DEBUG=1 python manage.py collectstatic --no-input -v 0
# The web server (README "Production"): granian serving hq.wsgi, 2 processes x 8 threads; each
# process holds at most HQ_DB_POOL_MAX (8) PostgreSQL connections.
ENV GRANIAN_INTERFACE=wsgi GRANIAN_HOST=0.0.0.0 GRANIAN_PORT=8000 GRANIAN_WORKERS=2 GRANIAN_BLOCKING_THREADS=8 \
    GRANIAN_RESPAWN_FAILED_WORKERS=true
EXPOSE 8000
CMD ["granian", "hq.wsgi:application"]
