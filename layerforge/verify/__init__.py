"""Prove that a layer imports: in a clean read-only interpreter of the target, or in a container.

Owns the bootstrap that runs inside the target interpreter, the choice of verifier and `verify ZIP`.
May import: the foundation, `runners`, `binaries` and `tree`.
"""
