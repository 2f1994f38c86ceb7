"""examples/ddp_finetune.py: the fine-tuning contract under torchrun (2 processes, DDP, gloo on CPU)
holds the masks on every rank and matches the single-process run of the same computation."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ddp_finetune.py"
TOLERANCE = 1e-5            # largest weight difference allowed between the DDP and single runs

# what torchrun / gloo print when they cannot start here (no loopback networking, ...)
_CANNOT_START = re.compile(r"RendezvousConnectionError|RendezvousTimeoutError|Address family not supported|"
                           r"Cannot assign requested address|Network is unreachable|"
                           r"Gloo connectFullMesh failed|failed to create a socket|socket\(\) failed")


def _load(out: Path):
    return json.loads((out / "result.json").read_text()), torch.load(out / "weights.pt")


def test_ddp_finetune_holds_masks_and_matches_single_process(tmp_path):
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    args = ["--epochs", "2", "--limit", "300", "--batch", "16"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(EXAMPLE), "--out", str(ddp_out), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    if proc.returncode != 0:
        log = proc.stdout + proc.stderr
        if _CANNOT_START.search(log):
            pytest.skip(f"torchrun could not start 2 gloo processes here: {_CANNOT_START.search(log).group(0)}")
        pytest.fail(f"torchrun run failed (exit {proc.returncode}):\n{log[-4000:]}")
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        import ddp_finetune
        ddp_finetune.main(["--single", "--world", "2", "--out", str(single_out), *args])
    finally:
        sys.path.remove(str(EXAMPLE.parent))
    rep_d, w_d = _load(ddp_out)
    rep_s, w_s = _load(single_out)
    assert rep_d["distributed"] and rep_d["world"] == 2 and not rep_s["distributed"]
    # the masks were checked on both ranks after each epoch, and the ranks agree on every weight
    assert rep_d["mask_checks_per_rank"] == [2, 2]
    assert rep_d["max_rank_difference"] == 0.0
    assert rep_d["steps"] == rep_s["steps"] > 0
    assert rep_d["masks_kept"] == rep_s["masks_kept"]
    for k in w_d:
        if k.endswith(".mask"):
            assert torch.equal(w_d[k], w_s[k]), k
            w = w_d[k.replace(".parametrizations.weight.0.mask", ".parametrizations.weight.original")]
            assert torch.all(w[~w_d[k]] == 0), k
    worst = max(float((w_d[k].float() - w_s[k].float()).abs().max()) for k in w_d)
    assert worst <= TOLERANCE, f"DDP and single-process weights differ by {worst}"
    assert [h["val_acc"] for h in rep_d["history"]] == [h["val_acc"] for h in rep_s["history"]]
    assert rep_d["val_acc"] > 0.5
