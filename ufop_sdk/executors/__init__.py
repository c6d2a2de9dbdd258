"""Executors run processors away from the event loop: in a local pool or on Celery."""
