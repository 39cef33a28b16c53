"""Where the tests find the repository and the raw datasets: ``$ULMFIT_DATA``, else
``../shared/data`` beside the repository (as scripts/common.sh)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    env = os.environ.get("ULMFIT_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"
