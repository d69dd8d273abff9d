"""Shared objects: read ELF headers, cut symbol tables, strip debug info, audit against the target.

May import: the foundation only. `tree` reads ELF headers through it (shared copies, file modes), and the
build runs its strip and audit after slimming.
"""
