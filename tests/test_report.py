"""The compress report: report.md and a self-contained report.html whose every plot is an
embedded PNG, names from the model escaped, and the page rendered by headless Chromium."""
import base64
import io
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from PIL import Image

from dtmm.errors import DtmmError
from dtmm.pipeline.report import compress_report, example_summary
from dtmm.pipeline.report_html import compress_report_html, report_files
from dtmm.pipeline.report_plots import PLOTS
from dtmm.util.files import write_outputs

PNG_URI = "data:image/png;base64,"
SECTIONS = ("budgets", "accuracy", "pruning", "sizes", "instructions", "finetune", "attempts", "verify")
HOSTILE = "<script>alert(1)</script>"


class _Page(HTMLParser):
    """Tags, their attributes and the text of a page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(page: str) -> _Page:
    p = _Page()
    p.feed(page)
    p.close()
    return p


def _images(p: _Page) -> dict[str, Image.Image]:
    out = {}
    for tag, a in p.tags:
        if tag == "img":
            assert a["src"].startswith(PNG_URI), a["src"][:40]
            raw = base64.b64decode(a["src"][len(PNG_URI):], validate=True)
            assert raw[:8] == b"\x89PNG\r\n\x1a\n"
            im = Image.open(io.BytesIO(raw))
            im.load()                                  # decodes every pixel: a truncated PNG fails
            assert im.format == "PNG" and im.width > 100 and im.height > 100
            out[a["id"]] = im
    return out


def _hostile_summary():
    s = example_summary(model=f"{HOSTILE}/net.py:small")
    s["dataset"] = "<b>data</b>"
    names = ['<img src=x onerror="alert(2)">', "a|b & $x^2$", "$\\nosuchcommand{$\\", "conv_" + "x" * 80]
    for ly, sb, new in zip(s["plan"]["layers"], s["size_breakdown"]["layers"], names):
        old = ly["name"]
        ly["name"] = sb["name"] = new
        for p in s["verify"]["qemu-m55"]["profile"]:
            if p["op"] == old:
                p["op"] = new
    return s, names


def test_html_embeds_every_plot_as_a_png_and_every_section():
    s = example_summary()
    page = compress_report_html(s)
    p = _parse(page)
    imgs = _images(p)
    assert set(imgs) == {f"plot-{k}" for k in PLOTS}
    ids = {a.get("id") for _, a in p.tags if a.get("id")}
    for k in SECTIONS:
        assert k in ids, k
    text = " ".join(p.text)
    for title in ("Budgets", "Accuracy (test split)", "Per-layer pruning (plan)", "Size breakdown",
                  "Per-layer instructions on the target", "Fine-tuning", "Verification"):
        assert title in text, title
    # the tables carry the summary's numbers
    assert "29,388 B (measured)" in text and "15,704" in text and "44,871" in text
    # nothing external: images are data URIs, links stay in the page, no script
    assert not any(t == "script" for t, _ in p.tags)
    for tag, a in p.tags:
        assert not a.get("href") or a["href"].startswith("#"), (tag, a)
        assert not a.get("src") or a["src"].startswith(PNG_URI), (tag, a)


def test_names_from_the_model_are_escaped_everywhere():
    s, names = _hostile_summary()
    page = compress_report_html(s)
    assert HOSTILE not in page and "<b>data</b>" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    p = _parse(page)
    assert [t for t, _ in p.tags].count("img") == len(PLOTS)       # no injected element
    assert not any(t in ("script", "b") for t, _ in p.tags)
    text = " ".join(p.text)
    for n in names:
        assert n in text, n                            # shown to the reader as written
    assert len(_images(p)) == len(PLOTS)               # "$" in names does not break a plot
    md = compress_report(s)
    assert "a\\|b & $x^2$" in md                       # a "|" does not split a Markdown table row


def test_without_a_target_run_instructions_are_labelled_predicted():
    s = example_summary()
    s["verify"]["qemu-m55"] = {"skipped": "QEMU / arm-none-eabi-gcc not available"}
    s["dense_on_target"] = None
    for v in s["budgets_met"].values():
        if "measured" in v:
            v["measured"] = False
    page = compress_report_html(s)
    assert "Predicted by the plan&#x27;s cost model" in page
    assert "(predicted)" in page
    imgs = _images(_parse(page))
    assert set(imgs) == {f"plot-{k}" for k in PLOTS}
    # the measured and the predicted instruction plots differ
    assert PLOTS["instructions"](s) != PLOTS["instructions"](example_summary())


def test_sections_without_data_are_left_out_not_faked():
    s = example_summary()
    del s["size_breakdown"]
    s["fine_tuning"]["history"] = []
    p = _parse(compress_report_html(s))
    imgs = _images(p)
    assert "plot-sizes" not in imgs and "plot-finetune" not in imgs
    assert "No per-epoch history" in " ".join(p.text)


def test_a_summary_that_is_not_one_is_refused():
    with pytest.raises(DtmmError, match="missing"):
        compress_report_html({"model": "x"})


def test_report_files_go_through_write_outputs(tmp_path):
    files = report_files(example_summary())
    write_outputs(tmp_path, files)
    manifest = json.loads((tmp_path / ".dtmm-manifest.json").read_text())
    assert {"report.md", "report.html"} <= set(manifest["files"])
    assert (tmp_path / "report.md").read_text().startswith("# dtmm compress: ")


# ----------------------------------------------------------------------------- the browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium for the headless render check "
                             "(apt-get install --no-install-recommends chromium; make apt does)")


def _chromium(tmp_path, *args) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@needs_chromium
def test_report_renders_in_headless_chromium(tmp_path):
    s, _ = _hostile_summary()
    write_outputs(tmp_path, report_files(s))
    url = (tmp_path / "report.html").as_uri()

    # 1. the DOM Chromium builds: every section and plot, no injected element
    dom = _chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    p = _parse(dom.stdout)
    assert [t for t, _ in p.tags].count("img") == len(PLOTS)
    assert not any(t == "script" for t, _ in p.tags)
    ids = {a.get("id") for _, a in p.tags}
    assert all(k in ids for k in SECTIONS) and all(f"plot-{k}" in ids for k in PLOTS)

    # 2. Chromium decodes every embedded PNG to its real size (a probe page of the report's
    # images; the report itself runs no script)
    page = _parse((tmp_path / "report.html").read_text())
    want = _images(page)
    probe = tmp_path / "probe.html"
    tags = "".join(f'<img id="{a["id"]}" src="{a["src"]}">' for t, a in page.tags if t == "img")
    probe.write_text(
        f"<!DOCTYPE html><html><body>{tags}<script>window.addEventListener('load', () => "
        "document.body.setAttribute('data-decoded', Array.from(document.images).map(i => "
        "i.id + ':' + (i.complete ? i.naturalWidth + 'x' + i.naturalHeight : 'no')).join(',')));"
        "</script></body></html>")
    res = _chromium(tmp_path, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    body = next(a for t, a in _parse(res.stdout).tags if t == "body")
    got = dict(x.split(":") for x in body["data-decoded"].split(","))
    assert got == {k: f"{im.width}x{im.height}" for k, im in want.items()}

    # 3. the screenshot: the page is drawn, plots included (their bar colour is on it)
    shot = tmp_path / "report.png"
    res = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,3000",
                    "--hide-scrollbars", url)
    assert res.returncode == 0 and shot.is_file(), res.stderr[-2000:]
    im = Image.open(shot).convert("RGB")
    assert im.size == (1200, 3000)
    colors = im.getcolors(maxcolors=1 << 20)
    assert len(colors) > 50, "the screenshot is blank"
    bar = sum(n for n, c in colors if all(abs(a - b) <= 6 for a, b in zip(c, (0x44, 0x77, 0xAA))))
    assert bar > 20000, f"the plots' bars are missing from the screenshot ({bar} pixels)"
