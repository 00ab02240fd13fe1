"""Scenario files: share-group stories in YAML, run in virtual time (sim) or live, and checked.

``load`` reads and checks a file (``schema.json`` is the format), ``run_sim`` runs it on the
engine in virtual time, ``run_live`` against a proxy and a real broker, ``expect`` judges a
run's trace and ``report`` draws it. See scenarios/README.md.
"""

from __future__ import annotations
