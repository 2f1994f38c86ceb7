"""dtmm bench paper --quick: every step of the paper benchmark at toy size, JSON written."""
import json

from dtmm.bench.paper import pruned_per_layer
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
    dense_weights = b["dense"]["resnet8"]["layer_weights"]
    for r in done:
        s = r["summary"]
        # every pruned layer's dense weight count is known by name; the pruned shares are shares
        assert {ly["name"] for ly in s["layers"]} <= set(dense_weights)
        shares = pruned_per_layer(s, dense_weights)
        assert len(shares) == sum(ly["kind"] == "conv" for ly in s["layers"]) > 0
        assert all(0.0 <= v < 1.0 for v in shares.values()) and max(shares.values()) > 0
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


def test_claims_compare_with_the_papers_figures():
    """The headline block: size and instruction ratios of the Fig. 11 picks, the index
    overhead and the per-layer pruned range of DTMM's picks, each beside the paper's figure."""
    from dtmm.bench.paper import PAPER, _claims

    def pick(const, ins, index, layers):
        return {"summary": {"const_bytes": const, "instructions_per_inference": ins,
                            "breakdown": {"weights": const - index - 10, "index": index, "quant": 10, "meta": 0},
                            "layers": layers}}

    conv = [{"name": "a", "kind": "conv", "weights": 25}, {"name": "b", "kind": "conv", "weights": 90},
            {"name": "f", "kind": "fc", "weights": 5}]
    b = {"dense": {"m": {"layer_weights": {"a": 100, "b": 100, "f": 10}}}}
    picks = {("m", "dtmm"): pick(600, 900, 12, conv), ("m", "chip"): pick(1000, 600, 0, conv),
             ("m", "patdnn"): None}
    text = _claims(b, picks)
    assert f"DTMM vs CHIP: 40.0 % smaller on average (paper {PAPER['size_vs_chip']} % smaller)" in text
    assert "50.0 % more instructions (paper" in text
    assert "DTMM vs PATDNN: no model where both stayed within 0.5 pp" in text
    assert "index bytes / model data): 2.0 % (paper 1.1-3.2 %); m 2.0 %." in text
    assert "m 10.0-75.0 % over 2 layers." in text
    assert "scripts/bench_storage.py" in text


def test_partial_runs_get_their_own_section_and_a_full_run_replaces_them(tmp_path):
    """`--models resnet12` never replaces another run's tables: its own section (and plot),
    right after the full run's; a full run's section then replaces every partial one."""
    from dtmm.bench.paper import section_for, write_report
    from dtmm.benchmd import section_names, write_section

    md, docs = tmp_path / "BENCHMARKS.md", tmp_path / "docs"
    write_section("bench_storage", "storage", md)
    write_section("bench_paper", "full, older", md)
    write_section("fuzz", "fuzz", md)
    docs.mkdir()
    sec, png = section_for(["resnet12"])
    (docs / png).write_bytes(b"png")
    (docs / "paper_fig12.png").write_bytes(b"full png")
    write_report("resnet12 alone", sec, md, docs)
    assert section_names(md) == ["bench_storage", "bench_paper", "bench_paper_resnet12", "fuzz"]
    assert "full, older" in md.read_text()                      # the other run's tables stay
    write_report("resnet12 again", sec, md, docs)                # a rerun replaces its own
    assert "resnet12 again" in md.read_text() and "resnet12 alone" not in md.read_text()
    write_report("every model", *section_for(None)[:1], md, docs)
    assert section_names(md) == ["bench_storage", "bench_paper", "fuzz"]
    assert "every model" in md.read_text() and "resnet12" not in md.read_text()
    assert not (docs / png).exists() and (docs / "paper_fig12.png").read_bytes() == b"full png"


def test_reading_compares_at_dtmms_budget_and_per_kept_weight():
    from dtmm.bench.paper import reading

    def run(method, frac, acc, ins=None, weights=None, error=False):
        r = {"model": "m", "method": method, "frac": frac}
        if error:
            return {**r, "error": "unreachable"}
        return {**r, "summary": {"accuracy": {"int8_after": acc}, "instructions_per_inference": ins,
                                 "breakdown": {"weights": weights}}}

    runs = [run("dtmm", 0.25, 0.980, 3000, 100), run("chip", 0.25, 0.960, 1500, 90),
            run("patdnn", 0.25, 0, error=True), run("chip", 0.6, 0.984, 2000, 200)]
    b = {"dense": {"m": {"int8_accuracy": 0.984}}, "runs": runs}
    picks = {("m", "dtmm"): runs[0], ("m", "chip"): runs[3], ("m", "patdnn"): None}
    text = reading(b, picks)
    assert "m at 25% (DTMM -0.4): chip -2.4, patdnn unreachable" in text
    assert "m: chip 10, dtmm 30." in text                 # 2000 / 200 and 3000 / 100
    assert "minimizes the predicted accuracy loss" in text
    assert "floor" not in text                        # DTMM's pick is not at the smallest size
    runs.append(run("chip", 0.08, 0.982, 900, 40))
    runs.append(run("dtmm", 0.08, 0.981, 1200, 38))
    picks.update({("m", "dtmm"): runs[-1], ("m", "chip"): runs[-2]})
    assert "for m DTMM's Fig. 11 model is at the smallest size tried" in reading(b, picks)
