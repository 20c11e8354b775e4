"""Sphinx configuration of the sb3-cemah documentation (build: ``sphinx-build -W -b html docs docs/_build/html``)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sb3_cemah

project = "sb3-cemah"
author = "The sb3-cemah developers"
copyright = "2026, The sb3-cemah developers"
release = sb3_cemah.__version__

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "**/results/**"]
myst_heading_anchors = 3
html_theme = "sphinx_rtd_theme"
html_title = f"sb3-cemah {release}"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_mock_imports = ["ray"]
# The benchmark reports link to the data files beside them (CSV, JSON, NPZ): copied as downloads, not documents.
suppress_warnings = ["myst.header"]
