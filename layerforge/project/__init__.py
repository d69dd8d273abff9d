"""A project of layers: the project file (`layerforge.toml`), its cells (layer x runtime x arch), the
GitHub Actions matrix, building every cell here in parallel, publishing built cells to every region, and
the catalogue of what was published (JSON, Markdown and Terraform variables).

May import: the foundation, every stage, and `build`.
"""

PROJECT_FILE = "layerforge.toml"
