"""benchmarks/gpu_check.sh --cpu-dry-run: the GPU check's every section, on CPU at tiny sizes, into one
results file with every field (the numbers are a smoke check, not measurements)."""
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(240)
def test_the_gpu_check_dry_run_writes_every_field(tmp_path, ray_tmp):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(ray_tmp)
    p = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu-dry-run", "--out", str(tmp_path)], cwd=REPO,
                       env=env, capture_output=True, text=True, timeout=230)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads((tmp_path / "gpu_check.json").read_text())
    assert r["dry_run"] is True and r["device"]["device"] == "cpu" and r["device"]["peak_bf16_tflops"] is None
    assert r["gpu_tests"]["summary"] == "not run (--cpu-dry-run)"
    a = r["adaptation"]
    assert set(a["rows"]) == {"fp32", "bf16", "bf16+compile"} and a["plain_flops_per_step"] > 0
    for row in a["rows"].values():
        assert row["sec_per_step"] > 0 and row["plain_sec_per_step"] > 0 and row["tflops"] > 0 and row["share_of_bf16_peak"] is None
        assert row["accel"] == {"device_type": "cpu", "bf16": False, "channels_last": False, "compile": False,
                                "fused_modconv": True}  # on CPU every knob resolves to off
    assert a["bf16_speedup"] > 0 and a["compile_speedup"] > 0
    m = r["modconv"]
    assert m["fused"] > 0 and m["unfused"] > 0 and m["faster"] in ("fused", "unfused") and m["auto_picks"] == "fused"
    t = r["ray_train"]
    assert t["bare_sec_per_step"] > 0 and t["ray_train_sec_per_step"] > 0 and t["use_gpu"] is False
    d = r["data_wait"]
    for mode in ("in_memory", "streamed"):
        assert d[mode]["sec_per_step"] > 0 and 0 < d[mode]["wait_share"] < 1
    assert r["seconds"] > 0 and not list(tmp_path.glob("*.pt"))  # scratch files are not left in the results
