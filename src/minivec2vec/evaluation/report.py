"""A visual report of a fitted map on paired test rows: one self-contained HTML file.

:func:`write_report` evaluates the map as :func:`minivec2vec.evaluation.metrics.evaluate_retrieval`
does and writes a page with a one-paragraph verdict, tables of the numbers, five PNG plots
embedded as base64 (no other file, no script, no network: the rank histogram, the paired
cosines against random pairs, recall@k / retention / top-k overlap for k = 1 .. 100, the
self-check scores of the fit against their thresholds, the stage timings) and the map's
provenance (file and array checksums, parameters, stage settings). ``minivec2vec report`` is
its command line.

The plots need matplotlib (the extra ``minivec2vec[report]``), imported only here and drawn
with the Agg canvas directly, so pyplot's global state and the user's backend are untouched.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import html
import io
import os
import tempfile
import time
import zipfile

import numpy as np

from ..exceptions import MissingDependencyError, OutputPathError
from .._runtime.validation import check_output_path
from ..stages.confidence import (AGREEMENT_THRESHOLD, CONFIDENCE_THRESHOLD, KNOWN_PAIRS_THRESHOLD,
                                 RETURN_THRESHOLD, doubtful)
from .metrics import (TEST_POOL, _paired_ranks, _retrieval_details, check_retrieval_plan,
                      open_test_sets, read_test_sets)

CURVE_K = 100            # the recall / overlap curves run over k = 1 .. CURVE_K
_BLUE, _ORANGE, _GREY, _RED, _GREEN = "#1f77b4", "#ff7f0e", "#7f7f7f", "#d62728", "#2ca02c"


def _matplotlib():
    """(Figure, FigureCanvasAgg), or MissingDependencyError naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError(
            "the report draws its plots with matplotlib, which is not installed: "
            f"pip install \"minivec2vec[report]\" ({exc})") from None
    return Figure, FigureCanvasAgg


def write_report(model, A_test, B_test, path, force=False, *, queries=None, relevant=None,
                 ks=None, pool=TEST_POOL, column=None, n_threads=None, title=None):
    """Evaluate a map on paired test rows and write the report to ``path`` (HTML).

    Parameters
    ----------
    model : MiniVec2Vec or path of a map file
        A map file also gives the report its file checksum and format version.
    A_test, B_test : arrays or anything :func:`minivec2vec.io.sources.open_source` accepts
        (``.npy``, ``.parquet``, a directory of shards, a store): row i of each embeds the
        same text. B rows are taken in B's raw frame (the map's B training mean is removed).
    path : str or path-like
        The HTML file. Its directory must exist; an existing file is overwritten only with
        ``force=True``. Written to a temporary file beside it and renamed into place, so a
        failure leaves no half-written report (and an older report intact).
    queries, relevant, ks, pool, column, n_threads
        As ``minivec2vec evaluate``: B-space queries that are not corpus texts, relevance
        judgements (one list of corpus rows per query, or the path of a qrels file, see
        :func:`minivec2vec.evaluation.metrics.read_qrels`), recall cut-offs (default: those of 1, 10,
        100 the corpus holds), the pool of the top-1 / mean rank protocol, the Parquet column.
    title : str, optional

    Returns
    -------
    dict with ``path``, ``bytes``, ``images`` (PNG count), ``seconds`` and ``evaluation``
    (the :func:`~minivec2vec.evaluation.metrics.evaluate_retrieval` summary).

    Errors come before any work: MissingDependencyError without matplotlib,
    OutputDirectoryNotFoundError / OutputPathError for a report path that cannot be written or
    that exists without ``force``, then the input checks of ``evaluate_retrieval``.
    """
    t0 = time.perf_counter()
    Figure, Canvas = _matplotlib()
    path = os.fspath(path)
    check_output_path(path, "report")
    if os.path.exists(path) and not force:
        raise OutputPathError(f"report: {path!r} already exists: pass force=True (--force) to "
                              "overwrite it")
    from ..model import MiniVec2Vec
    provenance = {}
    if isinstance(model, (str, os.PathLike)):
        map_path = os.fspath(model)
        model = MiniVec2Vec.load(map_path)
        provenance = _map_file_provenance(map_path)
    else:
        model._check_fitted()
        provenance = _model_provenance(model)
    sources = open_test_sets(model, A_test, B_test, queries=queries, column=column)
    ks, relevant = check_retrieval_plan(sources, ks, relevant)

    mapped, corpus, query_rows = read_test_sets(model, sources)
    summary, curves = _retrieval_details(mapped, corpus, query_rows, relevant, ks,
                                         curve_k=CURVE_K, pool=pool, n_threads=n_threads)
    # rank of B row i's own text among the mapped corpus (the known-item rank behind the
    # recall curve), over all rows
    ranks, true_cos = _paired_ranks(corpus, mapped, pool=None, n_threads=n_threads,
                                    names=("B_test", "mapped A_test"))
    random_cos = _random_pair_cosines(mapped, corpus)
    scores = _self_check(model)

    draw = _Drawer(Figure, Canvas)
    images = [
        ("Rank of each text's own mapped row", draw.rank_histogram(ranks),
         "For B row i as the query, the 1-based rank of mapped A row i (the same text) among all "
         f"{ranks.shape[0]} mapped rows, by cosine. Rank 1: found first."),
        ("Cosine of mapped rows with their true B rows, against random pairs",
         draw.cosines(true_cos, random_cos),
         "cos(mapped A row i, B row i) for every pair, and cos(mapped A row i, B row j) for a "
         "random j != i: the wider the gap, the more the map separates true partners."),
        ("Recall@k, retention and top-k overlap, k = 1 .. "
         f"{curves['recall'].shape[0]}", draw.recall_curves(curves, summary["mode"]),
         "Left: recall of the B queries against the mapped corpus and against the re-embedded B "
         "corpus. Right: their ratio (retention) and the share of each query's top-k that the "
         "two corpora have in common."),
        ("Self-check of the fit (no pairs needed)", draw.self_check(scores),
         "Scores the fit computed without test pairs, with the thresholds the fit warns below."),
        ("Stage timings of the fit", draw.timings(getattr(model, "timings_", {})),
         "Seconds per stage (summed over restarts), as stored in the map file."),
    ]
    document = _html(title or "minivec2vec map report", summary, ranks, true_cos, random_cos,
                     scores, images, provenance, sources, model)
    data = document.encode("utf-8")
    _write_atomic(path, data)
    return {"path": path, "bytes": len(data), "images": len(images),
            "seconds": time.perf_counter() - t0, "evaluation": summary}


# ------------------------------------------------------------------------------ inputs
def _random_pair_cosines(mapped, corpus, seed=0):
    """cos(mapped_i, corpus_sigma(i)) for a random cyclic permutation sigma (no fixed point)."""
    n = mapped.shape[0]
    if n < 2:
        return np.zeros(0, dtype=np.float32)
    order = np.random.default_rng(seed).permutation(n)
    sigma = np.empty(n, dtype=np.int64)
    sigma[order] = np.roll(order, -1)
    a = mapped / np.maximum(np.linalg.norm(mapped, axis=1, keepdims=True), 1e-30)
    b = corpus[sigma]
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-30)
    return np.einsum("ij,ij->i", a, b)


def _self_check(model):
    """The fit's own scores (NaN where the map file has none) and the verdict sentence."""
    def score(name):
        value = getattr(model, name, float("nan"))
        return float("nan") if value is None else float(value)

    confidence = score("confidence_")
    agreement = score("restart_agreement_")
    returned = score("return_agreement_")
    known = score("known_pairs_top1_")
    restarts = np.asarray(getattr(model, "restart_confidences_", []), dtype=np.float64)
    if np.isnan(confidence):
        verdict = "the map file holds no self-check scores (written before they were stored)"
    else:
        reason = doubtful(confidence, agreement, known, returned)
        if reason is not None:
            verdict = f"the alignment is doubtful: {reason}"
        elif not np.isnan(known):
            verdict = (f"no doubt: held-out top-1 on the known pairs {known:.3f} is at least "
                       f"{KNOWN_PAIRS_THRESHOLD}")
        elif returned >= RETURN_THRESHOLD:
            verdict = (f"no doubt: the refinement comes back to the kept map once it is turned "
                       f"away (return agreement {returned:.3f}, threshold {RETURN_THRESHOLD})")
        elif not np.isnan(agreement):
            verdict = (f"no doubt: an independent restart agrees with the kept map "
                       f"(restart agreement {agreement:.3f}, threshold {AGREEMENT_THRESHOLD})")
        else:
            verdict = (f"no doubt: confidence {confidence:.3f} is at least "
                       f"{CONFIDENCE_THRESHOLD} (a single restart: no restart agreement)")
    return {"confidence": confidence, "agreement": agreement, "returned": returned,
            "known_pairs_top1": known,
            "restarts": restarts, "verdict": verdict}


def _array_digest(value):
    """SHA-256 of an array serialised as the map file stores it (same digest as meta.json)."""
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
    return hashlib.sha256(buf.getvalue()).hexdigest()


def _model_provenance(model):
    arrays = {name: _array_digest(getattr(model, name)) for name in model._ARRAYS
              if hasattr(model, name)}
    return {"source": "in-memory model (not read from a file)", "arrays": arrays,
            "params": model.get_params(), "stage_settings": getattr(model, "stage_settings_", {}),
            "written_by": None, "format": None, "file_sha256": None, "file_bytes": None}


def _map_file_provenance(map_path):
    """What the map file says about itself: its SHA-256 and size, format and version, the
    minivec2vec version that wrote it, every array's checksum, parameters and stage settings
    (read after :meth:`MiniVec2Vec.load` has verified them)."""
    import json

    from ..io.etl import file_sha256
    with zipfile.ZipFile(map_path) as zf:
        meta = json.loads(zf.read("meta.json").decode("utf-8"))
    extra = meta.get("extra", {})
    return {"source": os.path.abspath(map_path), "file_sha256": file_sha256(map_path),
            "file_bytes": os.path.getsize(map_path),
            "format": f"{meta.get('format')} version {meta.get('version')}",
            "written_by": extra.get("minivec2vec_version"), "arrays": meta.get("arrays", {}),
            "params": meta.get("params", {}), "stage_settings": extra.get("stage_settings_", {})}


# ------------------------------------------------------------------------------ plots
class _Drawer:
    """Each method draws one figure and returns it as PNG bytes."""

    def __init__(self, Figure, Canvas):
        self.Figure, self.Canvas = Figure, Canvas

    def _figure(self, ncols=1, width=7.5, height=3.6):
        fig = self.Figure(figsize=(width, height), dpi=100)
        self.Canvas(fig)
        axes = fig.subplots(1, ncols)
        return fig, axes

    @staticmethod
    def _plain_log(axis):
        """Log-scale ticks as plain numbers (1, 10, 100), not 10^k."""
        from matplotlib.ticker import FuncFormatter
        axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))

    @staticmethod
    def _png(fig):
        fig.tight_layout()
        buf = io.BytesIO()
        fig.canvas.print_png(buf)
        return buf.getvalue()

    def rank_histogram(self, ranks):
        fig, ax = self._figure()
        n = max(ranks.shape[0], 2)                      # every rank lies in 1 .. n
        edges = np.unique(np.round(np.logspace(0, np.log10(n + 1), 30)).astype(np.int64))
        if edges[-1] <= n:
            edges = np.append(edges, n + 1)
        counts, _ = np.histogram(ranks, bins=edges)
        ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=_BLUE,
               edgecolor="white", linewidth=0.5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(0.9, n * 1.15)
        ax.set_ylim(0.8, max(counts.max(), 1) * 1.6)
        self._plain_log(ax.xaxis)
        self._plain_log(ax.yaxis)
        ax.set_xlabel("rank of the true partner (log scale; 1 = found first)")
        ax.set_ylabel("queries per bin (log scale)")
        ax.set_title(f"rank 1: {np.mean(ranks == 1):.1%} of {ranks.shape[0]}, "
                     f"rank <= 10: {np.mean(ranks <= 10):.1%}, median {np.median(ranks):g}",
                     fontsize=10)
        ax.grid(True, which="major", alpha=0.3)
        return self._png(fig)

    def cosines(self, true_cos, random_cos):
        fig, ax = self._figure()
        values = np.concatenate([true_cos, random_cos])
        bins = np.linspace(float(values.min()), float(values.max()), 60)
        ax.hist(random_cos, bins=bins, color=_GREY, alpha=0.7,
                label=f"random pairs (mean {_fmt(float(random_cos.mean()), 3)})")
        ax.hist(true_cos, bins=bins, color=_BLUE, alpha=0.7,
                label=f"true pairs (mean {_fmt(float(true_cos.mean()), 3)})")
        ax.set_xlabel("cosine(mapped A row, B row)")
        ax.set_ylabel("pairs")
        ax.legend(loc="upper left", fontsize=9)
        ax.grid(True, alpha=0.3)
        return self._png(fig)

    def recall_curves(self, curves, mode):
        fig, (left, right) = self._figure(ncols=2, width=10, height=3.8)
        k = np.arange(1, curves["recall"].shape[0] + 1)
        left.plot(k, curves["recall"], color=_BLUE, label="against the mapped A corpus")
        left.plot(k, curves["recall_b"], color=_ORANGE, linestyle="--",
                  label="against the re-embedded B corpus")
        left.set_xscale("log")
        self._plain_log(left.xaxis)
        left.set_ylim(0, 1.02)
        left.set_xlabel("k (log scale)")
        left.set_ylabel("recall@k")
        left.set_title("recall of the B queries" + (" (known-item)" if mode == "known-item"
                                                      else " (qrels)"), fontsize=10)
        left.legend(loc="best", fontsize=8)
        left.grid(True, which="both", alpha=0.3)
        with np.errstate(divide="ignore", invalid="ignore"):
            retention = np.where(curves["recall_b"] > 0, curves["recall"] / curves["recall_b"],
                                 np.nan)
        right.plot(k, retention, color=_GREEN, label="retention (mapped / re-embedded)")
        right.plot(k, curves["overlap"], color=_RED, linestyle="-.",
                   label="top-k overlap with the re-embedded corpus")
        right.set_xscale("log")
        self._plain_log(right.xaxis)
        right.set_ylim(0, max(1.02, float(np.nanmax(retention)) * 1.02
                              if np.isfinite(retention).any() else 1.02))
        right.set_xlabel("k (log scale)")
        right.set_ylabel("ratio")
        right.set_title("what the migration keeps", fontsize=10)
        right.legend(loc="best", fontsize=8)
        right.grid(True, which="both", alpha=0.3)
        return self._png(fig)

    def self_check(self, scores):
        fig, (left, right) = self._figure(ncols=2, width=10, height=3.6)
        restarts = scores["restarts"]
        labels = [f"restart {i + 1}" for i in range(restarts.shape[0])] + ["final map"]
        values = list(np.nan_to_num(restarts, nan=0.0)) + [
            0.0 if np.isnan(scores["confidence"]) else scores["confidence"]]
        colors = [_GREY] * restarts.shape[0] + [_BLUE]
        left.bar(labels, values, color=colors)
        left.axhline(CONFIDENCE_THRESHOLD, color=_RED, linestyle="--")
        for x, v in enumerate(values):
            left.text(x, v, f"{v:.3f}", ha="center", va="bottom", fontsize=8)
        left.set_ylabel("confidence_")
        left.set_ylim(0, max(1.15, max(values) * 1.12))
        left.set_title(f"unpaired confidence (red: threshold {CONFIDENCE_THRESHOLD}, which "
                       "decides only\nwithout the checks on the right)", fontsize=9)
        left.tick_params(axis="x", labelsize=8)
        entries = [("return\nagreement", scores["returned"], RETURN_THRESHOLD),
                   ("restart\nagreement", scores["agreement"], AGREEMENT_THRESHOLD),
                   ("known-pairs\ntop-1", scores["known_pairs_top1"], KNOWN_PAIRS_THRESHOLD)]
        for x, (label, value, threshold) in enumerate(entries):
            if np.isnan(value):
                right.text(x, 0.05, "not computed", ha="center", va="bottom", fontsize=8,
                           color=_GREY, rotation=90)
                value = 0.0
            else:
                right.text(x, value, f"{value:.3f}", ha="center", va="bottom", fontsize=8)
            right.bar(x, value, color=_GREEN if value >= threshold else _RED, width=0.6)
            right.hlines(threshold, x - 0.4, x + 0.4, color="black", linestyle="--")
            right.text(x + 0.42, threshold, f"threshold {threshold}", va="center", fontsize=7)
        right.set_xticks(range(len(entries)), [e[0] for e in entries])
        right.set_xlim(-0.6, len(entries) - 0.1)
        right.set_ylim(0, 1.1)
        right.set_ylabel("score")
        right.set_title("the checks that decide the warning", fontsize=10)
        return self._png(fig)

    def timings(self, timings):
        stages = sorted(((k, float(v)) for k, v in timings.items() if k != "total"),
                        key=lambda item: -item[1])
        fig, ax = self._figure(height=max(2.0, 0.35 * len(stages) + 1.0))
        if not stages:
            ax.text(0.5, 0.5, "no timings in this map file", ha="center", va="center")
            ax.set_axis_off()
            return self._png(fig)
        names = [name for name, _ in stages][::-1]
        seconds = [value for _, value in stages][::-1]
        ax.barh(names, seconds, color=_BLUE)
        for y, s in enumerate(seconds):
            ax.text(s, y, f" {s:.2f} s", va="center", fontsize=8)
        ax.set_xlim(0, max(seconds) * 1.2 if max(seconds) > 0 else 1)
        ax.set_xlabel("seconds")
        total = timings.get("total")
        ax.set_title("fit stages" + (f" (total {float(total):.1f} s)" if total is not None
                                     else ""), fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
        return self._png(fig)


# ------------------------------------------------------------------------------ the page
_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1040px; color: #222; line-height: 1.45; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em;
     border-bottom: 1px solid #ddd; padding-bottom: 0.2em; }
.verdict { background: #f4f7fb; border-left: 4px solid #1f77b4; padding: 0.8em 1em; }
.doubtful { border-left-color: #d62728; background: #fbf4f4; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f3f3f3; } code { font-size: 0.9em; } .small { color: #666; font-size: 0.85em; }
figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
"""


def _e(value):
    return html.escape(str(value), quote=True)


def _fmt(value, digits=4):
    if value is None:
        return "-"
    if isinstance(value, float):
        if np.isnan(value):
            return "-"
        return f"{value:.{digits}f}".replace("-0." + "0" * digits, "0." + "0" * digits)
    return str(value)


def _table(header, rows, numeric_from=1):
    out = ["<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            css = ' class="num"' if i >= numeric_from else ""
            cells.append(f"<td{css}>{_e(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def _verdict(summary, scores, true_cos, random_cos):
    k = 10 if 10 in summary["ks"] else summary["ks"][-1]
    recall, recall_b = summary[f"recall@{k}"], summary[f"recall@{k}_b"]
    retention, overlap = summary[f"retention@{k}"], summary[f"overlap@{k}"]
    if summary["mode"] == "known-item":
        found = (f"B queries against the mapped corpus find their own text in the top {k} for "
                 f"{recall:.1%} of the {summary['queries']} queries (recall@{k}; the "
                 f"re-embedded B corpus: {recall_b:.1%}")
        if summary["queries"] == summary["corpus"] and recall_b > 0.999:
            found += (", where each query finds itself, so the retention "
                      f"{_fmt(retention, 3)} just repeats the mapped recall; relevance "
                      "judgements (--qrels) give a meaningful one")
        found += ")"
    else:
        found = (f"B queries against the mapped corpus keep {_fmt(retention * 100, 1)}% of "
                 f"the re-embedded corpus's recall@{k} ({recall:.3f} against {recall_b:.3f}, "
                 f"{summary['judged']} judged queries)")
    return (f"{found}, and their top-{k} lists share {overlap:.1%} of the rows the "
            f"re-embedded corpus returns. Mapped A rows rank their own B row first for "
            f"{summary['top1']:.1%} of the {summary['pool']} pairs (mean rank "
            f"{summary['mean_rank']:.2f}; mean cosine {_fmt(float(true_cos.mean()), 3)} "
            f"against {_fmt(float(random_cos.mean()), 3)} for random pairs). The self-check of "
            f"the fit says: {scores['verdict']}.")


def _html(title, summary, ranks, true_cos, random_cos, scores, images, provenance, sources,
          model):
    from .._version import __version__
    generated = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    doubtful_css = " doubtful" if scores["verdict"].startswith("the alignment is doubtful") \
        else ""
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_e(title)}</h1>",
             f"<p class=\"small\">{_e(provenance['source'])} &middot; generated {generated} by "
             f"minivec2vec {_e(__version__)}</p>",
             f"<p class=\"verdict{doubtful_css}\" id=\"verdict\">"
             f"{_e(_verdict(summary, scores, true_cos, random_cos))}</p>"]

    parts.append("<h2 id=\"retrieval\">Retrieval: B queries against the mapped corpus</h2>")
    mode = ("known-item (query i's relevant item is corpus row i)"
            if summary["mode"] == "known-item"
            else f"judgements (qrels), {summary['judged']} of {summary['queries']} queries "
                 "judged")
    parts.append(f"<p>{summary['queries']} B queries, a corpus of {summary['corpus']} texts "
                 f"(mapped from A, or re-embedded by B); relevance: {_e(mode)}. Exact cosine "
                 "kNN.</p>")
    parts.append(_table(["k", "recall@k, mapped corpus", "recall@k, re-embedded B corpus",
                         "retention", "top-k overlap"],
                        [[k, _fmt(summary[f"recall@{k}"]), _fmt(summary[f"recall@{k}_b"]),
                          _fmt(summary[f"retention@{k}"]), _fmt(summary[f"overlap@{k}"])]
                         for k in summary["ks"]]))
    if summary["mode"] == "known-item" and summary["queries"] == summary["corpus"]:
        parts.append("<p class=\"small\">In known-item mode the re-embedded B corpus contains "
                     "each query itself and scores recall 1.0, so the retention is the mapped "
                     "recall; real relevance judgements give a meaningful retention. The top-k "
                     "overlap is meaningful in both modes.</p>")

    parts.append("<h2 id=\"paired\">Paired rows (the mini-vec2vec protocol)</h2>")
    parts.append(_table(["measure", "value"], [
        ["top-1 (mapped A row i ranks B row i first)", _fmt(summary["top1"])],
        ["mean rank (1-based)", _fmt(summary["mean_rank"], 2)],
        ["pool (pairs ranked)", summary["pool"]], ["ranking", summary["metric"]],
        ["mean cosine of true pairs", _fmt(float(true_cos.mean()))],
        ["mean cosine of random pairs", _fmt(float(random_cos.mean()))],
        ["B query -> own mapped row: rank 1 / rank <= 10 / median",
         f"{np.mean(ranks == 1):.4f} / {np.mean(ranks <= 10):.4f} / {np.median(ranks):g}"]]))

    parts.append("<h2 id=\"plots\">Plots</h2>")
    for caption, png, note in images:
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<figure><img alt=\"{_e(caption)}\" src=\"data:image/png;base64,{data}\">"
                     f"<figcaption><b>{_e(caption)}.</b> {_e(note)}</figcaption></figure>")

    parts.append("<h2 id=\"self-check\">Self-check of the fit</h2>")
    restarts = ", ".join(_fmt(float(v), 3) for v in scores["restarts"]) or "-"
    parts.append(_table(["score", "value", "threshold"], [
        ["confidence_", _fmt(scores["confidence"]), CONFIDENCE_THRESHOLD],
        ["restart_confidences_", restarts, "-"],
        ["return_agreement_", _fmt(scores["returned"]), RETURN_THRESHOLD],
        ["restart_agreement_", _fmt(scores["agreement"]), AGREEMENT_THRESHOLD],
        ["known_pairs_top1_", _fmt(scores["known_pairs_top1"]), KNOWN_PAIRS_THRESHOLD]]))
    parts.append(f"<p>{_e(scores['verdict'])}.</p>")

    timings = getattr(model, "timings_", {}) or {}
    parts.append("<h2 id=\"timings\">Stage timings</h2>")
    stages = sorted(((k, float(v)) for k, v in timings.items() if k != "total"),
                    key=lambda item: -item[1])
    if "total" in timings:
        stages.append(("total", float(timings["total"])))
    parts.append(_table(["stage", "seconds"], [[k, f"{v:.2f}"] for k, v in stages])
                 if timings else "<p>No timings in this map.</p>")

    parts.append("<h2 id=\"provenance\">Provenance</h2>")
    rows = [["map", provenance["source"]]]
    if provenance.get("file_sha256"):
        rows += [["map file SHA-256", provenance["file_sha256"]],
                 ["map file bytes", provenance["file_bytes"]],
                 ["map format", provenance["format"]],
                 ["written by minivec2vec", provenance["written_by"] or "-"]]
    rows.append(["map", f"A {model.W_.shape[0]}-d -> B {model.W_.shape[1]}-d"])
    for source in sources:
        if source is not None:
            rows.append([f"input {source.name}",
                         f"{source.describe()} ({source.n_rows} rows x {source.n_features}, "
                         f"{source.dtype})"])
    parts.append(_table(["item", "value"], rows, numeric_from=2))
    parts.append("<p>Array checksums (SHA-256 of each array as the map file stores it):</p>")
    parts.append(_table(["array", "SHA-256"], sorted(provenance["arrays"].items()),
                        numeric_from=2))
    parts.append("<p>Estimator parameters and the stage sizes the fit used:</p>")
    params = sorted(provenance["params"].items())
    settings = dict(provenance.get("stage_settings") or {})
    parts.append(_table(["parameter", "value", "stage setting used"],
                        [[k, "-" if v is None else v, settings.get(k, "-")] for k, v in params]
                        + [[k, "-", v] for k, v in sorted(settings.items())
                           if k not in provenance["params"]], numeric_from=1))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _write_atomic(path, data):
    """Write ``data`` to a temporary file beside ``path``, fsync, rename into place."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".minivec2vec-report-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
