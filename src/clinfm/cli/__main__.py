"""``python -m clinfm.cli``: the same app as the ``clinfm`` command."""

from __future__ import annotations

import os

os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

from clinfm.cli import app  # noqa: E402

app()
