"""dtmm bench paper --quick: every step of the paper benchmark at toy size, JSON written."""
import json

from dtmm.cli import main

from _helpers import needs_qemu


@needs_qemu
def test_bench_paper_quick(tmp_path, capsys):
    rc = main(["bench", "paper", "--quick", "--jobs", "1", "--out", str(tmp_path), "--json"])
    assert rc == 0
    b = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "paper.json").read_text())
    assert saved["runs"] == b["runs"]
    methods = {r["method"] for r in b["runs"]}
    assert methods == {"dtmm", "chip", "patdnn"}
    done = [r for r in b["runs"] if "summary" in r]
    assert done, b["runs"]
    for r in done:
        s = r["summary"]
        assert s["const_bytes"] <= r["model_bytes"]           # every run meets its budget
        assert all(v.get("bit_exact", True) for v in s["verify"].values())
        # one dense int8 model: the bench's dense row and every compress run calibrate alike
        assert s["accuracy"]["int8_before"] == round(b["dense"]["resnet8"]["int8_accuracy"], 4)
    # Fig. 15 from the linked images: the parts add up to each firmware's flash
    for model, per_target in b["code"].items():
        assert set(per_target) == {"cortex-m4", "cortex-m7", "cortex-m55"}
        for t, c in per_target.items():
            assert c["flash"] == c["flash_measured"] > 0
            assert c["kernels"].get("dtmm_conv_fwcs_s8.c", 0) > 0 or c["method"] != "dtmm"
            assert c["model_code"] > 0 and c["model_data"] > 0
