"""Lookalike's Qt (PySide6) front end: views, models, delegates and workers over engine.api."""
