"""The console: one origin for every service's page and API (a static shell plus a small reverse proxy)."""
