"""``report.html``: the compress report as one self-contained page.

The sections of :func:`dtmm.pipeline.report.report_sections` with their tables and the
PNG plots of :mod:`dtmm.pipeline.report_plots` embedded as ``data:image/png;base64``
URIs: no script, no stylesheet or font from elsewhere, nothing fetched. Every text
from the summary (model, dataset and layer names come from user files) is
HTML-escaped.

Example:
    >>> from dtmm.pipeline.report import example_summary
    >>> page = compress_report_html(example_summary("<b>net</b>"))
    >>> "&lt;b&gt;net&lt;/b&gt;" in page and "<b>net</b>" not in page
    True
    >>> page.count('src="data:image/png;base64,')
    6
    >>> sorted(report_files(example_summary("m")))
    ['report.html', 'report.md']
"""
from __future__ import annotations

import base64
from html import escape

from dtmm.pipeline.report import Bad, compress_report, report_sections, title
from dtmm.pipeline.report_plots import PLOTS

__all__ = ["compress_report_html", "report_files"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;
 background:#fff;color:#222}
main{max-width:1120px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:1.5em;border-bottom:2px solid #4477aa;padding-bottom:6px;word-break:break-all}
h2{font-size:1.2em;margin-top:2em;color:#224466}
nav a{margin-right:1em}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 8px;word-break:break-all}
th{background:#eef2f7}
td.r{text-align:right;font-variant-numeric:tabular-nums}
.bad{color:#b00020;font-weight:bold}
img{max-width:100%;height:auto;display:block;margin:8px 0;border:1px solid #eee}
p.note{color:#555;font-size:.9em}
"""


def _cell(c, align: str) -> str:
    cls = ' class="r"' if align == "r" else ""
    body = f'<span class="bad">{escape(str(c))}</span>' if isinstance(c, Bad) else escape(str(c))
    return f"<td{cls}>{body}</td>"


def _img(key: str, png: bytes, alt: str) -> str:
    return (f'<img id="plot-{escape(key)}" alt="{escape(alt)}" '
            f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">')


def compress_report_html(s: dict, plots: dict[str, bytes] | None = None) -> str:
    """The page for the compress summary ``s``; ``plots`` (key -> PNG bytes) default to
    drawing each section's plot with :data:`dtmm.pipeline.report_plots.PLOTS`."""
    secs = report_sections(s)
    if plots is None:
        plots = {}
        for sec in secs:
            if sec.plot is not None:
                png = PLOTS[sec.plot](s)
                if png is not None:
                    plots[sec.plot] = png
    t = escape(title(s))
    H = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
         '<meta name="viewport" content="width=device-width, initial-scale=1">',
         # no external resources and no scripts: say so to the browser too
         "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
         "img-src data:; style-src 'unsafe-inline'\">",
         f"<title>{t}</title><style>{_CSS}</style></head><body><main>", f"<h1>{t}</h1>",
         "<nav>" + "".join(f'<a href="#{escape(sec.key)}">{escape(sec.title)}</a>' for sec in secs)
         + "</nav>"]
    for sec in secs:
        H.append(f'<section id="{escape(sec.key)}"><h2>{escape(sec.title)}</h2>')
        if sec.plot is not None and sec.plot in plots:
            H.append(_img(sec.plot, plots[sec.plot], f"{sec.title} plot"))
        if sec.rows:
            H.append("<table><thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in sec.headers)
                     + "</tr></thead><tbody>")
            for r in sec.rows:
                H.append("<tr>" + "".join(_cell(c, a) for c, a in zip(r, sec.align)) + "</tr>")
            H.append("</tbody></table>")
        for p in sec.text:
            H.append(f'<p class="note">{escape(p)}</p>')
        H.append("</section>")
    H.append("</main></body></html>")
    return "\n".join(H) + "\n"


def report_files(s: dict) -> dict[str, bytes]:
    """``{"report.md": ..., "report.html": ...}``: the bytes the compress report step writes
    (through :func:`dtmm.util.files.write_outputs`)."""
    return {"report.md": compress_report(s).encode("utf-8"),
            "report.html": compress_report_html(s).encode("utf-8")}
