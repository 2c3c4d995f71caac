"""Lookalike engine: everything that computes, stores and searches descriptors.

Nothing under ``engine/`` imports Qt. The GUI reaches it only through :mod:`engine.api`,
:mod:`engine.services` and :mod:`engine.errors` (``tests/test_architecture.py`` checks it).
"""

__version__ = "0.1.0"
