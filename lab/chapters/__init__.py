"""Each chapter's glue, one module per chapter: its grids, records, printed sentences and tables, so that a reader of
chapter NN finds its code in one file (`cNN_<name>`); the ideas they call live in the modules named for them.
"""
