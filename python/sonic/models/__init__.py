"""Model files that sonic can use offline (shipped in PyPI packages) and helpers around them."""
