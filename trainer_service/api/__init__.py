"""The trainer HTTP API: `app.create_app`, one `routes_*` blueprint per resource over `web`."""
