"""``python -m siret_summary``: the command line, as the ``siret-summary`` script (siret_summary/cli_entry.py)."""

import sys

from siret_summary.cli_entry import main

sys.exit(main())
