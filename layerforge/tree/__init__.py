"""The layer tree: safe unpacking of wheels, strip rules, shared copies, top-level names, bytecode, the zip.

May import: the foundation, `binaries` (ELF headers) and `runners` (the interpreter that compiles bytecode).
"""
