# One image for every role (web, worker, beat); the role is the command.
FROM python:3.11.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_ENV=production CARTWATCH_VAR_DIR=/var/lib/cartwatch
WORKDIR /app
COPY pyproject.toml constraints-image.txt README.md ./
# Every runtime package at its pinned version and checked against its hash; then the service itself, alone.
RUN pip install --no-cache-dir --require-hashes -r constraints-image.txt
COPY config ./config
COPY surveillance ./surveillance
COPY locale ./locale
RUN pip install --no-cache-dir --no-deps . && useradd --system --home /app cartwatch \
    && mkdir -p /var/lib/cartwatch && chown cartwatch /var/lib/cartwatch
COPY manage.py ./
COPY seeds ./seeds
# A throwaway key of production strength: production settings refuse a weak one, even for collectstatic.
RUN DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')" \
    python manage.py collectstatic --noinput
USER cartwatch
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--config", "python:config.gunicorn", "--bind", "0.0.0.0:8000", "--workers", "5", "--access-logfile", "-"]
