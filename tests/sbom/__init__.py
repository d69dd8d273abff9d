"""Tests of layerforge/sbom/."""
