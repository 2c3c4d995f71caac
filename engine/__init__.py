"""Lookalike engine: everything that computes, stores and searches descriptors.

Nothing under ``engine/`` imports Qt; the GUI talks to it through :mod:`engine.api`.
"""

__version__ = "0.1.0"
