"""Everything that talks to AWS: S3 uploads, layer versions, function updates, remote zips, error messages.

May import: the foundation, and `sbom` (the name of the SBOM that publish uploads beside the zip).
"""
