"""The compress report's plots: PNG bytes drawn with matplotlib (Agg, no display).

One function per plot, each taking the compress summary (``summary.json``'s content)
and returning PNG bytes, or None when the summary has no data for it:
per-layer pruning ratios and formats (the paper's Fig. 12d), the size breakdown into
weights / index / quant / other (Fig. 13), accuracy before and after (float, int8),
flash / SRAM / instructions against the budgets, per-layer instructions on the target,
and the fine-tuning curve. Names from the model are drawn as plain text (matplotlib's
math mode is never entered: a ``$`` in a layer name is escaped).

Example:
    >>> s = {"accuracy": {"float_before": 0.9, "int8_before": 0.89, "float_after": 0.88,
    ...      "int8_after": 0.87}, "budgets_met": {}}
    >>> plot_accuracy(s)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
"""
from __future__ import annotations

import io

from dtmm.pipeline.report import SIZE_CATEGORIES, budget_rows, layer_instructions, layer_pruning

__all__ = ["PLOTS", "all_plots", "plot_pruning", "plot_sizes", "plot_accuracy", "plot_budgets",
           "plot_instructions", "plot_finetune"]

_COLORS = {"weights": "#4477aa", "index": "#ee6677", "quant": "#ccbb44", "other": "#aaaaaa",
           "dense": "#bbbbbb", "compressed": "#4477aa", "budget": "#cc3311", "alpha": "#228833",
           "beta": "#4477aa", "removed": "#aa3377", "predicted": "#ee7733"}
_MAX_LABEL = 22


def _label(name) -> str:
    """A model-given name as safe plain text for matplotlib: ``$`` escaped (no math mode),
    control characters dropped, long names shortened."""
    t = "".join(ch for ch in str(name) if ch.isprintable())
    if len(t) > _MAX_LABEL:
        t = t[:_MAX_LABEL - 1] + "\u2026"
    return t.replace("$", r"\$")


def _figure(w: float, h: float, ncols: int = 1):
    from matplotlib.figure import Figure          # no pyplot: no display, the Agg canvas

    fig = Figure(figsize=(w, h), dpi=100)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, axes


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _fmt_count(v: float) -> str:
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.0f}"


# ----------------------------------------------------------------------------- plots


def plot_pruning(s: dict) -> bytes | None:
    """Per layer: filters removed (beta), filterlets removed (alpha), share of the dense
    layer's weights removed; the layer's format under its name (paper Fig. 12d)."""
    layers = layer_pruning(s)
    if not layers:
        return None
    import numpy as np

    n = len(layers)
    fig, (ax,) = _figure(max(6.0, 0.9 * n + 2), 4.2)
    x = np.arange(n)
    series = [("beta", "filters removed (beta)"), ("alpha", "filterlets removed (alpha)")]
    if any(ly["removed"] is not None for ly in layers):
        series.append(("removed", "weights removed"))
    w = 0.8 / len(series)
    for i, (k, lab) in enumerate(series):
        vals = [ly[k] if ly[k] is not None else 0.0 for ly in layers]
        ax.bar(x + (i - (len(series) - 1) / 2) * w, vals, w, label=lab, color=_COLORS[k])
    _xticks(ax, [(ly["name"], ly["format"]) for ly in layers])
    for tick, ly in zip(ax.get_xticklabels(), layers):
        tick.set_color("#000000" if ly["format"] == "dense" else "#1b5e20")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("pruning ratio")
    ax.set_title("Per-layer pruning ratios and formats")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_sizes(s: dict) -> bytes | None:
    """Stacked bars weights / index / quant / other, dense vs compressed (paper Fig. 13), and
    per layer (compressed stacked against the dense layer's size)."""
    sb = s.get("size_breakdown")
    if not sb:
        return None
    fig, (ax, ax2) = _figure(11, 4.2, 2)
    _stack(ax, ["dense", "compressed"], [sb["dense"], sb["compressed"]])
    for i, k in enumerate(("dense", "compressed")):
        ax.annotate(f"{sb[k]['total']:,} B", (i, sb[k]["total"]), ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, max(sb["dense"]["total"], sb["compressed"]["total"], 1) * 1.3)
    ax.set_ylabel("bytes (model data in flash)")
    ax.set_title("Size breakdown")
    ax.legend(fontsize=8, loc="upper center", ncol=4)
    layers = sb.get("layers", [])
    if layers:
        per = {ly["name"]: ly for ly in (s.get("plan") or {}).get("layers", [])}
        names = [_label(ly["name"]) for ly in layers]
        parts = []
        for ly in layers:
            b = per.get(ly["name"], {}).get("bytes")
            if b:
                parts.append({k: b.get("meta" if k == "other" else k, 0) for k in SIZE_CATEGORIES})
            else:                                     # no split in the plan: all as weights
                parts.append({"weights": ly["bytes"], "index": 0, "quant": 0, "other": 0})
        _stack(ax2, names, parts)
        _xticks(ax2, [(ly["name"], None) for ly in layers])
        ax2.scatter(range(len(layers)), [ly["dense_bytes"] for ly in layers], marker="_", s=400,
                    color="#000000", label="dense layer", zorder=3)
        top = max(max(ly["dense_bytes"], ly["bytes"]) for ly in layers)
        ax2.set_ylim(0, max(top, 1) * 1.3)
        ax2.set_title("Per layer: compressed vs dense")
        ax2.set_ylabel("bytes")
        ax2.legend(fontsize=8, loc="upper center", ncol=5)
    else:
        ax2.set_axis_off()
    return _png(fig)


def _xticks(ax, labels: list[tuple[str, str | None]]) -> None:
    """Tick labels ``name`` (and a second line ``what``); slanted, on one line, past 8."""
    n = len(labels)
    if n <= 8:
        ax.set_xticks(range(n), [_label(a) + (f"\n{_label(b)}" if b else "") for a, b in labels],
                      fontsize=8)
    else:
        ax.set_xticks(range(n), [_label(a) + (f" ({_label(b)})" if b else "") for a, b in labels],
                      fontsize=8, rotation=40, ha="right", rotation_mode="anchor")


def _stack(ax, names, parts):
    bottom = [0] * len(names)
    for k in SIZE_CATEGORIES:
        vals = [p.get(k, 0) for p in parts]
        ax.bar(range(len(names)), vals, 0.6, bottom=bottom, color=_COLORS[k], label=k)
        bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def plot_accuracy(s: dict) -> bytes:
    """Test accuracy before (dense) and after (compressed), float and int8; the int8 bound."""
    acc = s["accuracy"]
    fig, (ax,) = _figure(6, 4)
    groups = ("float", "int8")
    for j, (when, color) in enumerate((("before", _COLORS["dense"]), ("after", _COLORS["compressed"]))):
        vals = [acc[f"{g}_{when}"] for g in groups]
        xs = [i + (j - 0.5) * 0.38 for i in range(len(groups))]
        ax.bar(xs, vals, 0.36, color=color, label=f"{'dense' if when == 'before' else 'compressed'}")
        for x, v in zip(xs, vals):
            ax.annotate(f"{v:.4f}", (x, v), ha="center", va="bottom", fontsize=8)
    bound = s.get("budgets_met", {}).get("accuracy", {}).get("bound")
    if bound is not None and bound > 0:
        ax.hlines(bound, 0.5, 1.5, colors=_COLORS["budget"], linestyles="--", label=f"int8 bound {bound:.4f}")
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylim(0, 1.25)
    m = s.get("metric") or acc.get("metric") or "accuracy"
    ax.set_ylabel(f"test {m}")
    ax.set_title(f"{'Accuracy' if m == 'accuracy' else m} before / after compression")
    ax.legend(fontsize=8, loc="upper center", ncol=3)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_budgets(s: dict) -> bytes:
    """Flash, SRAM and instructions of the compressed model (and the dense one when it ran on
    the target) against the budgets (dashed line; no line for a budget not set)."""
    rows = budget_rows(s)
    fig, axes = _figure(11, 3.6, len(rows))
    for ax, r in zip(axes, rows):
        names, vals, colors = [], [], []
        if r["dense"] is not None:
            names.append("dense"), vals.append(r["dense"]), colors.append(_COLORS["dense"])
        names.append("compressed"), vals.append(r["value"]), colors.append(_COLORS["compressed"])
        ax.bar(range(len(vals)), vals, 0.6, color=colors)
        for i, v in enumerate(vals):
            ax.annotate(_fmt_count(v) + (" B" if r["unit"] == "B" else ""), (i, v), ha="center",
                        va="bottom", fontsize=8)
        top = max(vals)
        if r["budget"] is not None:
            ok = r["value"] <= r["budget"]
            ax.axhline(r["budget"], color=_COLORS["budget"], linestyle="--",
                       label=f"budget {_fmt_count(r['budget'])}{' B' if r['unit'] == 'B' else ''} "
                             f"({'met' if ok else 'MISSED'})")
            top = max(top, r["budget"])
            ax.legend(fontsize=8, loc="upper right")
        ax.set_ylim(0, top * 1.35)
        ax.set_xticks(range(len(vals)), names)
        ax.set_title(f"{r['metric']} ({'measured' if r['measured'] else 'predicted'})", fontsize=10)
        ax.set_xlabel(r["note"], fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def plot_instructions(s: dict) -> bytes | None:
    """Per op: executed instructions on the target (QEMU per-op profile of one image) and the
    plan's prediction; predictions alone, labelled so, when the target did not run."""
    rows, measured = layer_instructions(s)
    if not rows:
        return None
    import numpy as np

    n = len(rows)
    fig, (ax,) = _figure(max(6.0, 0.8 * n + 2), 4.2)
    x = np.arange(n)
    if measured:
        w = 0.4
        ax.bar(x - w / 2, [r["measured"] for r in rows], w, color=_COLORS["compressed"],
               label="measured on the target (QEMU, 1 image)")
        ax.bar(x + w / 2, [r["predicted"] or 0 for r in rows], w, color=_COLORS["predicted"],
               label="predicted by the plan")
        ax.set_title(f"Per-layer instructions on the target ({_label(s['target'])})")
    else:
        ax.bar(x, [r["predicted"] for r in rows], 0.6, color=_COLORS["predicted"],
               label="predicted by the plan (target not run)")
        ax.set_title(f"Per-layer instructions, PREDICTED ({_label(s['target'])} not run)")
    _xticks(ax, [(r["name"], r["kind"]) for r in rows])
    ax.yaxis.set_major_formatter(_count_formatter())
    ax.set_ylabel("executed instructions")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _count_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: _fmt_count(v))


def plot_finetune(s: dict) -> bytes | None:
    """The fine-tuning curve: loss and accuracy per epoch (train, validation); epoch 0 is
    the validation accuracy right after pruning."""
    ft = s.get("fine_tuning") or {}
    h = ft.get("history") or []
    if not h:
        return None
    from matplotlib.ticker import MaxNLocator

    fig, (a1, a2) = _figure(11, 3.8, 2)
    ep = [e.get("epoch", i + 1) for i, e in enumerate(h)]
    m = s.get("metric") or (s.get("accuracy") or {}).get("metric") or "accuracy"
    for ax, key, what in ((a1, "loss", "loss"), (a2, "acc", m)):
        for split, style in (("train", "-o"), ("val", "-s")):
            pts = [(x, e[f"{split}_{key}"]) for x, e in zip(ep, h) if e.get(f"{split}_{key}") is not None]
            if key == "acc" and split == "val" and ft.get("val_accuracy_after_pruning") is not None:
                pts = [(0, ft["val_accuracy_after_pruning"])] + pts
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, ms=4,
                        label=f"{'train' if split == 'train' else 'validation'} {what}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a1.set_title("Fine-tuning: loss")
    a2.set_title(f"Fine-tuning: {m} (epoch 0: right after pruning)")
    return _png(fig)


#: Plot key (a :class:`dtmm.pipeline.report.Section`'s ``plot``) -> function.
PLOTS = {"budgets": plot_budgets, "accuracy": plot_accuracy, "pruning": plot_pruning,
         "sizes": plot_sizes, "instructions": plot_instructions, "finetune": plot_finetune}


def all_plots(s: dict) -> dict[str, bytes]:
    """Every plot the summary has data for: ``{key: PNG bytes}``."""
    out = {}
    for k, fn in PLOTS.items():
        png = fn(s)
        if png is not None:
            out[k] = png
    return out
