import json
import os
import subprocess
from pathlib import Path

import pytest

from ulmfit.paths import REPO_ROOT, data_root


@pytest.mark.slow
def test_trec6_recipe_runs_end_to_end_on_the_tiny_preset(tmp_path):
    if not (data_root() / "trec").exists():
        pytest.skip("TREC data not found under the data root")
    env = {**os.environ, "PRESET": "tiny", "MAX_STEPS": "8", "RUNS": str(tmp_path), "OMP_NUM_THREADS": "1",
           "ULMFIT_DATA": str(data_root())}
    result = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "trec6.sh")], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(Path(tmp_path, "trec", "ensemble_test.json").read_text())
    assert [m["backwards"] for m in report["models"]] == [False, True]
    assert report["ensemble"]["n"] == 500
    # a rerun skips every finished stage
    again = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "trec6.sh")], env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0 and "epoch 1" not in again.stderr
