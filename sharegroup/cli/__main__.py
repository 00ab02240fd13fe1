"""``python -m sharegroup.cli``: the ``sharegroup`` command."""

from __future__ import annotations

import sys

from sharegroup.cli.main import main

sys.exit(main())
