"""The notebook runtime and tooling: a notebook's run and claims, the runner, the report
(Markdown and HTML), run comparison, stripping, the CLI. Sits on the core and the lessons;
nothing in the core imports it.
"""
