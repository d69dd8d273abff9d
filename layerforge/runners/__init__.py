"""Where code for the target runs on this machine: a local CPython of the target's version, or a container.

Owns interpreter discovery and the Docker engine (Lambda's lockdown, images, running one container).
May import: the foundation (target, errors, cache, ...). Imported by resolve, tree, verify, doctor and build.
"""
