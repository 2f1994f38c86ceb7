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
        assert s["flash_bytes"] <= r["flash"]                 # every run meets its budget
        assert all(v.get("bit_exact", True) for v in s["verify"].values())
    assert set(b["code"]) == {"cortex-m4", "cortex-m7", "cortex-m55"}
