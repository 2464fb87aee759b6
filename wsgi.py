"""Production entry point: `gunicorn --workers 4 --bind 0.0.0.0:8000 wsgi:app`."""

from exchange import create_app

app = create_app()
