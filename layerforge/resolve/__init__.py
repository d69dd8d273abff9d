"""Resolve a recipe into a lock of pinned wheels, read index pages, download and check wheels, build sdists.

Stage 1 of the pipeline (recipe -> lock -> wheels). May import: the foundation and `runners` (source
builds run in a container). Imports no later stage.
"""
