# Image for the web and worker services of docker-compose.yml.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir -r requirements.lock
COPY . .
RUN pip install --no-cache-dir --no-deps . && DEBUG=1 python manage.py collectstatic --no-input -v 0
EXPOSE 8000
CMD ["gunicorn", "hq.wsgi", "-w", "2", "-b", "0.0.0.0:8000"]
