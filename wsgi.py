"""Production entry point: `gunicorn --workers 4 --bind 0.0.0.0:8000 wsgi:app`."""

from exchange.app import serve_app

app = serve_app()  # create_app(), and the screening name index loaded in the background
