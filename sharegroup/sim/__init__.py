"""The simulator: the real engine and model on an in-memory log, in virtual time.

``memlog`` is the log, ``loop`` the discrete-event loop (a heap of timed events; randomness
only from seeded ``random.Random`` objects handed to actors), ``actors`` the simulated
producers and share consumers, ``node`` the proxy's side (the engine driven the way
``proxy/shares.py`` drives it, minus sockets), ``trace`` what happened, range by range.
"""

from __future__ import annotations
