"""One module per notebook, named after it, holding only that notebook's plumbing (claims,
tables, plots, orchestration). The technique itself is code in the notebook's lesson cells.
"""
