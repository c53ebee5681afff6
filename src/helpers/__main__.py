"""`python -m helpers ...`."""

from helpers.runtime.cli import main

raise SystemExit(main())
