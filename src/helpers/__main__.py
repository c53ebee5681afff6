"""`python -m helpers ...`."""

from helpers.cli import main

raise SystemExit(main())
