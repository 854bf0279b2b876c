"""Sphinx configuration of django-zrpc's documentation: ``./dev docs`` builds it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]
# The reference is read from the code: the commands need Django set up,
# with the demo project's settings (no database is touched).
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "testproject.settings")
import django  # noqa: E402

django.setup()

import django_zrpc  # noqa: E402

project = "django-zrpc"
author = "The django-zrpc authors"
copyright = "2026, the django-zrpc authors"
release = django_zrpc.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "zrpc_reference",
]
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"django-zrpc {release}"
html_static_path = ["_static"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
# The intersphinx inventories would need the network; references to Django
# and Python are plain text.
intersphinx_mapping: dict[str, tuple[str, None]] = {}
nitpicky = False
