"""The runtime on top of the core: a notebook's run, runner, report, compare, strip, CLI."""
