"""Function packages: the handler check, the import scan against layers and the runtime, the function zip.

Sits above `build` (a function's requirements go through the layer pipeline). May import: anything but
`cli` and `doctor`.
"""
