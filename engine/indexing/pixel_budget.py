"""How many pixels the indexer's workers may decode at once.

Decode memory grows with the pixels being decoded, not with the number of workers: a 190 MP
PNG took 2.3 GB (RGB) to 4.8 GB (16-bit) to decode, and three workers each on such a photo
5.1 GB (docs/RELIABILITY.md). Each worker takes the photo's pixel count from the budget
before decoding and gives it back once the photo is described, so many phone photos decode
side by side while two giant panoramas wait for each other. One photo larger than the whole
budget still goes alone (the decoder itself refuses photos over ``MAX_PIXELS``).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

from engine.imaging.images import MAX_PIXELS

# One photo at the decoder's limit at a time (or 16 of 12 MP): about 2.3-4.8 GB at the worst.
DEFAULT_PIXEL_BUDGET = MAX_PIXELS


class PixelBudget:
    def __init__(self, limit: int = DEFAULT_PIXEL_BUDGET):
        self.limit = max(1, int(limit))
        self.in_flight = 0
        self.peak = 0  # the most pixels ever held at once (for tests and benchmarks)
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait until ``pixels`` fit in the budget (or nothing else is held), then hold them."""
        pixels = max(0, int(pixels))
        with self._cond:
            self._cond.wait_for(lambda: self.in_flight == 0 or self.in_flight + pixels <= self.limit)
            self.in_flight += pixels
            self.peak = max(self.peak, self.in_flight)
        try:
            yield
        finally:
            with self._cond:
                self.in_flight -= pixels
                self._cond.notify_all()
