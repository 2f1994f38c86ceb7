#!/usr/bin/env python3
"""Storage benchmark: the DTMM paper's Fig. 6(a), with exact byte accounting.

Five 3x3 conv layers (input H x W x C_in -> C_out), seeded random int8 weights, pruned by
magnitude at 90 %, 75 % and 50 % of the weights by each method at its own granularity
(as close to the target share as that granularity allows; the actual share is reported):

* filterlet -> FWCS (DTMM): drop the filterlets with the smallest L1 norm;
* element -> CSR, and the same element mask -> TFLM bitmask ("prune" decode layout);
* pattern (PatDNN-style): best 4-of-9 library pattern per kernel, then drop the kernels
  with the smallest kept L1 norm (connectivity pruning); a kernel never keeps more than
  4 of 9 weights, so this method prunes at least 55.6 %;
* structured: drop the filters with the smallest L1 norm -> a smaller dense layer.
  (Single-layer view: in a network the next layer's input channels would shrink too.)

Bytes are those of :mod:`dtmm.formats` (weights / index / quant+bias / metadata; every
byte defined in ``dtmm/formats/common.py``). Prints the tables and writes them into
``BENCHMARKS.md`` between ``<!-- bench_storage:start -->`` and ``<!-- bench_storage:end -->``
(atomically; the rest of the file is kept).

Usage: ``python scripts/bench_storage.py [--out BENCHMARKS.md] [--no-write] [--seed 0]``
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dtmm.benchmd import write_section
from dtmm.formats import ByteCount, byte_count, csr, dense, fwcs, pattern, tflm_prune

LAYERS = [(32, 32, 16, 32), (16, 16, 32, 64), (8, 8, 64, 128), (8, 8, 128, 128), (4, 4, 256, 256)]
RATIOS = (0.90, 0.75, 0.50)
METHODS = ("fwcs", "csr", "pattern", "tflm_prune", "structured")
TITLES = {"fwcs": "FWCS (filterlet)", "csr": "CSR (element)", "pattern": "pattern",
          "tflm_prune": "TFLM bitmask (element)", "structured": "structured (dense)"}
PAPER_FWCS_VS_CSR = 49.6  # % reduction at 90 %, paper Sec. III-A / Fig. 6(a)


@dataclass(frozen=True)
class Result:
    bytes: ByteCount
    pruned: float  # actual share of weights removed


def make_weight(c_out: int, c_in: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian weights quantized symmetrically to int8 (max |w| -> 127)."""
    w = rng.standard_normal((c_out, 3, 3, c_in))
    return np.round(w / np.abs(w).max() * 127).astype(np.int8)


def _top(scores: np.ndarray, keep: int) -> np.ndarray:
    """Bool mask of the ``keep`` largest scores (stable ties)."""
    flat = scores.reshape(-1)
    m = np.zeros(flat.shape, dtype=bool)
    if keep > 0:
        m[np.argsort(-flat, kind="stable")[:keep]] = True
    return m.reshape(scores.shape)


def prune_all(w: np.ndarray, ratio: float) -> dict[str, Result]:
    """Prune ``w`` by each method to ``ratio`` of its weights; encode; count bytes."""
    n = w.size
    c_out, _, _, c_in = w.shape
    a = np.abs(w.astype(np.int64))
    out: dict[str, Result] = {}

    fl = a.sum(axis=3)                                       # (C_out, 3, 3) filterlet L1
    fm = _top(fl, round((1 - ratio) * fl.size))
    f = fwcs.encode(w, fm)
    out["fwcs"] = Result(byte_count(f), 1 - f.arr.size / n)

    em = _top(a, round((1 - ratio) * n))
    out["csr"] = Result(byte_count(csr.encode(w, em)), 1 - em.sum() / n)
    out["tflm_prune"] = Result(byte_count(tflm_prune.encode(w, em)), 1 - em.sum() / n)

    pm = pattern.pattern_mask(w)
    kscore = (a * pm).sum(axis=(1, 2))                       # (C_out, C_in)
    n_k = min(kscore.size, round((1 - ratio) * n / pattern.KEPT_PER_KERNEL))
    p = pattern.encode(w, pattern.pattern_mask(w, _top(kscore, n_k)))
    out["pattern"] = Result(byte_count(p), 1 - p.values.size / n)

    keep_f = max(1, round((1 - ratio) * c_out))
    d = dense.encode(dense.shrink(w, out_keep=np.sort(np.argsort(-a.sum(axis=(1, 2, 3)),
                                                                   kind="stable")[:keep_f])))
    out["structured"] = Result(byte_count(d), 1 - d.values.size / n)
    return out


def run(seed: int) -> tuple[str, dict]:
    rng = np.random.default_rng(seed)
    res: dict[tuple[int, float], dict[str, Result]] = {}
    weights = {}
    for li, (h, wd, c_in, c_out) in enumerate(LAYERS):
        weights[li] = make_weight(c_out, c_in, rng)
        for ratio in RATIOS:
            res[li, ratio] = prune_all(weights[li], ratio)

    lines: list[str] = []
    add = lines.append
    add("## Storage (paper Fig. 6(a)): bytes per 3x3 conv layer by pruning method")
    add("")
    add(f"`python scripts/bench_storage.py --seed {seed}`: seeded Gaussian int8 weights, magnitude "
        "pruning per method at its own granularity. Bytes = weights + index + quant/bias + "
        "metadata "
        "as defined in `dtmm/formats/common.py` (quant: 9 B per stored output channel + 10 B per "
        "layer; header 10 B). Cells: total bytes (actual share of weights pruned). "
        "FWCS vs CSR = 1 - FWCS/CSR bytes; FWCS idx+meta = (index + metadata) / FWCS total.")
    add("")
    for ratio in RATIOS:
        add(f"### {ratio:.0%} of weights pruned")
        add("")
        add("| layer (H x W x C_in -> C_out) | C_in | C_out | dense | "
            + " | ".join(TITLES[m] for m in METHODS) + " | FWCS vs CSR | FWCS idx+meta |")
        add("|---|---:|---:|---:|" + "---:|" * len(METHODS) + "---:|---:|")
        for li, (h, wd, c_in, c_out) in enumerate(LAYERS):
            r = res[li, ratio]
            dense_b = dense.bytes_from_counts((c_out, 3, 3, c_in)).total
            fb, cb = r["fwcs"].bytes, r["csr"].bytes
            cells = [f"{r[m].bytes.total:,} ({r[m].pruned:.1%})" for m in METHODS]
            add(f"| {h}x{wd}x{c_in} -> {c_out} | {c_in} | {c_out} | {dense_b:,} | "
                + " | ".join(cells)
                + f" | {1 - fb.total / cb.total:.1%} | {(fb.index + fb.meta) / fb.total:.1%} |")
        add("")

    add("### Breakdown at 90 % (bytes: weights / index / quant+bias / meta)")
    add("")
    add("| layer | FWCS | CSR | pattern | TFLM bitmask |")
    add("|---|---|---|---|---|")
    for li, (h, wd, c_in, c_out) in enumerate(LAYERS):
        r = res[li, 0.9]
        cells = [" / ".join(f"{v:,}" for v in (b.weights, b.index, b.quant, b.meta))
                 for b in (r[m].bytes for m in ("fwcs", "csr", "pattern", "tflm_prune"))]
        add(f"| {h}x{wd}x{c_in} -> {c_out} | " + " | ".join(cells) + " |")
    add("")

    # ---- comparison with the paper, computed from the numbers above
    red = [1 - res[li, 0.9]["fwcs"].bytes.total / res[li, 0.9]["csr"].bytes.total
           for li in range(len(LAYERS))]
    wi = lambda b: b.weights + b.index  # noqa: E731
    red_wi = [1 - wi(res[li, 0.9]["fwcs"].bytes) / wi(res[li, 0.9]["csr"].bytes)
              for li in range(len(LAYERS))]
    red16 = []
    for li, (h, wd, c_in, c_out) in enumerate(LAYERS):
        fb, cb = res[li, 0.9]["fwcs"].bytes, res[li, 0.9]["csr"].bytes
        n_fl = (fb.weights) // c_in
        f16 = fb.weights + 2 * n_fl + 2 * (c_out + 1)
        c16 = cb.weights + 2 * cb.weights + 2 * (c_out + 1)
        red16.append(1 - f16 / c16)
    share = [(res[li, 0.9]["fwcs"].bytes.index + res[li, 0.9]["fwcs"].bytes.meta)
             / res[li, 0.9]["fwcs"].bytes.total for li in range(len(LAYERS))]
    idx_share = [res[li, 0.9]["fwcs"].bytes.index / res[li, 0.9]["fwcs"].bytes.total
                 for li in range(len(LAYERS))]
    q_share = [res[li, 0.9]["fwcs"].bytes.quant / res[li, 0.9]["fwcs"].bytes.total
               for li in range(len(LAYERS))]
    mean = lambda xs: 100 * sum(xs) / len(xs)  # noqa: E731
    gap = mean(red) - PAPER_FWCS_VS_CSR
    verdict = ("close to" if abs(gap) < 5 else "below" if gap < 0 else "above")
    # CSR index bytes per kept weight, ours; and what the paper's figure implies given our
    # FWCS bytes: 1 - F / (w * (1 + b)) = paper  =>  b = F / (w * (1 - paper)) - 1
    b_ours, b_paper, red8 = [], [], []
    for li, (h, wd, c_in, c_out) in enumerate(LAYERS):
        fb, cb = res[li, 0.9]["fwcs"].bytes, res[li, 0.9]["csr"].bytes
        b_ours.append(cb.index / cb.weights)
        b_paper.append(wi(fb) / (cb.weights * (1 - PAPER_FWCS_VS_CSR / 100)) - 1)
        col_bytes = cb.weights * (1 if 9 * c_in - 1 <= 255 else 2)
        red8.append(1 - fb.total / (cb.total - col_bytes + cb.weights))
    col8 = [str(li + 1) for li, (_, _, c_in, _) in enumerate(LAYERS) if 9 * c_in - 1 <= 255]
    add("### Comparison with the paper")
    add("")
    text = (
        f"At 90 % pruning FWCS takes on average {mean(red):.1f} % fewer bytes than CSR here "
        f"(per layer {', '.join(f'{100 * x:.1f}' for x in red)} %), {verdict} the paper's "
        f"{PAPER_FWCS_VS_CSR} % (gap {gap:+.1f} points). "
        f"Quantization parameters and bias cost the same in both formats "
        f"({100 * min(q_share):.1f}-{100 * max(q_share):.1f} % of an FWCS layer) and dilute the "
        f"saving: counting weights and index only, as the paper's size model does, the "
        f"reduction is {mean(red_wi):.1f} % (int16 indices everywhere, as in the authors' "
        f"prototype: {mean(red16):.1f} %). "
        f"The main difference is CSR's index width: our CSR stores a uint16 column per kept "
        f"weight wherever a filter has more than 256 positions (uint8 only in layer(s) "
        f"{', '.join(col8) or 'none'}), {min(b_ours):.2f}-{max(b_ours):.2f} index bytes per "
        f"kept weight, whereas the paper's {PAPER_FWCS_VS_CSR} % implies, for FWCS layers "
        f"like ours, {min(b_paper):.2f}-{max(b_paper):.2f} bytes per kept weight, i.e. about "
        f"one-byte column indices (for example relative 8-bit offsets; the paper does not "
        f"say). With one-byte CSR columns in every layer our reduction would be "
        f"{mean(red8):.1f} % (per layer {', '.join(f'{100 * x:.1f}' for x in red8)} %). "
        f"FWCS's index plus metadata is {100 * min(share):.1f}-{100 * max(share):.1f} % of an "
        f"FWCS layer (index alone {100 * min(idx_share):.1f}-{100 * max(idx_share):.1f} %; "
        f"largest in the smallest layer, where C_out + 1 filter pointers and the header weigh "
        f"most); {sum(x <= 0.05 for x in share)} of {len(share)} layers are at or under 5 %, "
        f"the paper's \"few percent\" (Fig. 13: 1.1-3.2 % index for whole models, where "
        f"large layers dominate the bytes).")
    add(text)
    add("")
    summary = {"fwcs_vs_csr_90": red, "fwcs_vs_csr_90_weights_index": red_wi,
               "fwcs_vs_csr_90_int16": red16, "fwcs_idx_meta_share_90": share}
    return "\n".join(lines), summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path,
                    default=Path(__file__).resolve().parents[1] / "BENCHMARKS.md")
    ap.add_argument("--no-write", action="store_true", help="only print the tables")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    body, _ = run(args.seed)
    print(body)
    if not args.no_write:
        write_section("bench_storage", body, args.out)
        print(f"\n(wrote section into {args.out})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
