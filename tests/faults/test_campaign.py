"""The fault campaign's short form for CI: a couple of minutes of faults, then every check of
``tests/faults/campaign.py``. ``SHAREGROUP_CAMPAIGN_SEED`` replays a run; the long form is
``python -m tests.faults.campaign --minutes N`` (docs/faults.md)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.faults.campaign import run_campaign

pytestmark = pytest.mark.integration

MINUTES = 2.0


def test_short_fault_campaign(tmp_path: Path) -> None:
    seed = int(os.environ.get("SHAREGROUP_CAMPAIGN_SEED", random.SystemRandom().randrange(1 << 32)))
    print(run_campaign(seed, MINUTES, 200.0, tmp_path))
