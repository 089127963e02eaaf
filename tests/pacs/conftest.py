"""Fixtures of the PACS tests. The helpers live in pacs_support.py (a unique module name: several
folders have a conftest.py, so `from conftest import ...` would pick whichever loaded first)."""

from pacs_support import *  # noqa: F401,F403  (fixtures and helpers)
from pacs_support import orthanc_factory, serve_factory, watch_factory  # noqa: F401
