"""write_report and ``minivec2vec report``: one self-contained HTML file on the shipped sample,
its sections, numbers and decodable PNGs, --force, refusals before any work, the atomic write,
the missing extra, and the page loaded by a real headless browser."""
from __future__ import annotations

import base64
import html
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report needs the extra minivec2vec[report]")

from minivec2vec import (MiniVec2Vec, MissingDependencyError,  # noqa: E402
                         OutputDirectoryNotFoundError, OutputPathError, evaluate_retrieval)
from minivec2vec.evaluation import report as report_module  # noqa: E402
from minivec2vec.cli import main  # noqa: E402
from minivec2vec.io.etl import file_sha256  # noqa: E402
from minivec2vec.evaluation.report import write_report  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SECTIONS = ("verdict", "retrieval", "paired", "plots", "self-check", "timings", "provenance")


def png_images(page):
    """The decoded PNGs of a page's data: URIs, with their (width, height) from IHDR."""
    images = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        png = base64.b64decode(data, validate=True)
        assert png[:8] == PNG_SIGNATURE and png[12:16] == b"IHDR"
        images.append((png, struct.unpack(">II", png[16:24])))
    return images


@pytest.fixture(scope="module")
def sample_report(rotation_map, sample_test_files, tmp_path_factory):
    """The report of the working rotation map on the sample's 1000 test pairs, via the CLI."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    assert main(["report", str(rotation_map), str(sample_test_files / "a.npy"),
                 str(sample_test_files / "b.npy"), "-o", str(path), "--json"]) == 0
    return path


def test_the_report_is_one_page_with_sections_numbers_and_plots(sample_report, rotation_map,
                                                                rotation_split):
    page = sample_report.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    for section in SECTIONS:
        assert f'id="{section}"' in page, section
    # self-contained: no external resource of any kind
    assert not re.search(r'(src|href)="(?!data:)', page)
    images = png_images(page)
    assert len(images) == 5
    for png, (width, height) in images:
        assert 600 <= width <= 1200 and 200 <= height <= 600 and len(png) > 5000
    # the numbers are evaluate_retrieval's
    model = MiniVec2Vec.load(rotation_map)
    corpus = np.asarray(rotation_split.test_b, np.float32) - model.mean_b_.astype(np.float32)
    want = evaluate_retrieval(model.transform(rotation_split.test_a), corpus)
    verdict = html.unescape(re.search(r'id="verdict">(.*?)</p>', page, re.S).group(1))
    assert f"in the top 10 for {want['recall@10']:.1%} of the 1000 queries" in verdict
    assert f"share {want['overlap@10']:.1%}" in verdict
    assert "each query finds itself" in verdict and "The self-check of the fit says" in verdict
    for k in (1, 10, 100):
        assert f"<td class=\"num\">{want[f'overlap@{k}']:.4f}</td>" in page
    # provenance: the map file's checksum and every array's, as meta.json stores them
    assert file_sha256(rotation_map) in page
    with zipfile.ZipFile(rotation_map) as zf:
        meta = json.loads(zf.read("meta.json"))
    for digest in meta["arrays"].values():
        assert digest in page
    assert "minivec2vec-map version 1" in page
    for stage in model.timings_:
        assert f"<td>{stage}</td>" in page


def test_the_cli_prints_a_summary(rotation_map, sample_test_files, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(rotation_map), str(sample_test_files / "a.npy"),
                 str(sample_test_files / "b.npy"), "-o", str(out), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["report"] == str(out) and got["images"] == 5 and got["bytes"] == out.stat().st_size
    assert got["recall@10"] >= 0.99 and got["overlap@10"] >= 0.75


def test_an_existing_report_is_overwritten_only_with_force(rotation_map, sample_test_files, tmp_path,
                                                          capsys):
    out = tmp_path / "r.html"
    out.write_text("an older report")
    argv = ["report", str(rotation_map), str(sample_test_files / "a.npy"),
            str(sample_test_files / "b.npy"), "-o", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert out.read_text() == "an older report"
    assert main(argv + ["--force"]) == 0
    assert len(png_images(out.read_text())) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]     # no temporary left


def test_a_missing_directory_is_refused_before_any_work(rotation_map, sample_test_files, tmp_path,
                                                        monkeypatch, capsys):
    loaded = []
    monkeypatch.setattr(MiniVec2Vec, "load", classmethod(lambda cls, p: loaded.append(p)))
    with pytest.raises(OutputDirectoryNotFoundError, match="does not exist"):
        write_report(rotation_map, sample_test_files / "a.npy", sample_test_files / "b.npy",
                     tmp_path / "missing" / "r.html")
    assert main(["report", str(rotation_map), str(sample_test_files / "a.npy"),
                 str(sample_test_files / "b.npy"), "-o", str(tmp_path / "missing" / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    with pytest.raises(OutputPathError, match="is a directory"):
        write_report(rotation_map, sample_test_files / "a.npy", sample_test_files / "b.npy", tmp_path)
    assert loaded == [] and not (tmp_path / "missing").exists()


def test_a_failure_while_rendering_leaves_no_file_and_the_old_one_intact(
        rotation_map, sample_test_files, tmp_path, monkeypatch):
    out = tmp_path / "r.html"
    out.write_text("an older report")

    def broken(*args, **kwargs):
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(report_module._Drawer, "timings", broken)
    with pytest.raises(RuntimeError, match="rendering failed"):
        write_report(rotation_map, sample_test_files / "a.npy", sample_test_files / "b.npy", out,
                     force=True)
    assert out.read_text() == "an older report"
    monkeypatch.undo()

    def disk_full(fd):                                   # the page is written, not yet synced
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="disk full"):
        write_report(rotation_map, sample_test_files / "a.npy", sample_test_files / "b.npy", out,
                     force=True)
    assert out.read_text() == "an older report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]


def test_without_matplotlib_the_error_names_the_extra(rotation_map, sample_test_files, tmp_path,
                                                      monkeypatch):
    for name in ("matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)          # import raises ImportError
    with pytest.raises(MissingDependencyError, match=r'minivec2vec\[report\]'):
        write_report(rotation_map, sample_test_files / "a.npy", sample_test_files / "b.npy",
                     tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_with_judgements_the_verdict_states_the_retention(rotation_map, rotation_split,
                                                          tmp_path):
    model = MiniVec2Vec.load(rotation_map)
    relevant = [np.arange(q, q + 3) for q in range(100)]
    result = write_report(model, rotation_split.test_a[100:], rotation_split.test_b[100:],
                          tmp_path / "r.html", queries=rotation_split.test_b[:100],
                          relevant=relevant, ks=(1, 10))
    page = html.unescape((tmp_path / "r.html").read_text())
    got = result["evaluation"]
    assert got["mode"] == "qrels" and got["ks"] == [1, 10]
    assert f"keep {got['retention@10'] * 100:.1f}% of the re-embedded corpus's recall@10" in page
    assert "in-memory model" in page and len(png_images(page)) == 5
    # the array checksums of an in-memory model are those the map file stores
    with zipfile.ZipFile(rotation_map) as zf:
        assert json.loads(zf.read("meta.json"))["arrays"]["W_"] in page


def _browser():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


def test_a_headless_browser_loads_the_page_and_its_images(sample_report, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no chromium, chromium-browser or google-chrome on PATH (apt-get install "
                    "chromium)")
    # a copy of the page with a probe that records, once loaded, how every image decoded
    probe = ('<script>window.addEventListener("load", function () {'
             'var out = [], imgs = document.images;'
             'for (var i = 0; i < imgs.length; i++) out.push(imgs[i].complete + ":" +'
             ' imgs[i].naturalWidth + "x" + imgs[i].naturalHeight);'
             'var p = document.createElement("pre"); p.id = "probe";'
             'p.textContent = out.join(" "); document.body.appendChild(p);});</script>')
    page = sample_report.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}"]
    run = subprocess.run([browser, *flags, "--virtual-time-budget=10000", "--dump-dom",
                          probed.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    loaded = re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1).split()
    sizes = [(w, h) for _, (w, h) in png_images(page)]
    assert loaded == [f"true:{w}x{h}" for w, h in sizes]
    # and a screenshot of the page as a person would see it
    shot = tmp_path / "page.png"
    run = subprocess.run([browser, *flags, "--hide-scrollbars", "--window-size=1100,1600",
                          f"--screenshot={shot}", sample_report.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.read_bytes()[:8] == PNG_SIGNATURE
