"""A single self-contained HTML report: figures as base64 PNG, tables as HTML.

The report is declared as a list of :class:`ReportSection`; :func:`render_report`
turns it into one HTML string with no external resources, so it can be
mailed, archived or attached to a Snakemake report as is.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import dsrpipe
from dsrpipe import DsrpipeError

logger = logging.getLogger(__name__)

Table = pd.DataFrame | tuple[str, pd.DataFrame]

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
.meta { color: #666; font-size: 0.9em; }
nav ul { columns: 3; font-size: 0.9em; }
section.warning { background: #fff4e5; border-left: 4px solid #e67e22; padding: 0 1em 1em; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
table.dsr { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
table.dsr th, table.dsr td { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
table.dsr th { background: #f3f3f3; }
.caption { font-weight: 600; font-size: 0.9em; margin: 0.8em 0 0.2em; }
.figs { display: flex; flex-wrap: wrap; gap: 0 1em; align-items: flex-start; }
.figs img { max-width: 100%; }
.scroll { overflow-x: auto; max-height: 40em; overflow-y: auto; }
table.sortable th { cursor: pointer; position: sticky; top: 0; white-space: nowrap; }
table.sortable th[aria-sort=ascending]::after { content: " \\25B2"; }
table.sortable th[aria-sort=descending]::after { content: " \\25BC"; }
table.sortable td:first-child { text-align: left; }
"""

# Click a header to sort by that column (again: reverse). Numeric cells sort by their data-v
# attribute, others by text; empty cells last. Plain DOM, no network.
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var asc = th.getAttribute("aria-sort") !== "ascending";
      Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", asc ? "ascending" : "descending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col], v = cell.getAttribute("data-v");
        if (v !== null) { return parseFloat(v); }
        var text = cell.textContent.trim();
        return text === "" ? null : text;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        var c = x < y ? -1 : (x > y ? 1 : 0);
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


@dataclass
class ReportSection:
    """One section of an HTML report.

    Attributes
    ----------
    title : str
        Section heading (also listed in the table of contents).
    text : str
        Plain text; blank lines separate paragraphs. HTML is escaped.
    figures : list of Figure or bytes
        Matplotlib figures, or PNG bytes already made by :func:`figure_to_png_bytes`
        (render early to keep memory low in large reports).
    tables : list of DataFrame or (caption, DataFrame)
        Tables shown after the figures, without the index.
    warning : bool
        Highlight the section (used for failed runs).
    anchor : str, optional
        The section's id (link target); ``sec-<i>`` by position when None.
    html : str
        Trusted HTML made by this module (e.g. :func:`sortable_table_html`),
        inserted after the text, before the figures.
    """

    title: str
    text: str = ""
    figures: list[Figure | bytes] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    warning: bool = False
    anchor: str | None = None
    html: str = ""


def figure_to_png_bytes(fig: Figure, dpi: int = 100, colors: int | None = None) -> bytes:
    """Render ``fig`` to PNG bytes (Agg renderer, no pyplot, no file).

    Parameters
    ----------
    fig : Figure
    dpi : int
        Resolution in dots per inch; the pixel size is ``figsize * dpi``.
    colors : int, optional
        Quantise to a palette of this many colours (2-256). Dense line plots
        shrink about four-fold with 32 colours at little visible cost. None
        keeps full colour.

    Returns
    -------
    bytes
        The PNG file contents.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    if colors is None:
        return buf.getvalue()
    from PIL import Image  # a matplotlib dependency

    buf.seek(0)
    img = Image.open(buf).convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _img(fig: Figure | bytes, dpi: int, alt: str) -> str:
    png = fig if isinstance(fig, bytes) else figure_to_png_bytes(fig, dpi)
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _format_cell(x) -> str:
    if isinstance(x, (float, np.floating)):
        return "" if np.isnan(x) else f"{x:.4g}"
    return str(x)


def table_to_html(df: pd.DataFrame) -> str:
    """Render ``df`` as an HTML table without its index; floats to 4 significant digits."""
    return df.to_html(index=False, border=0, classes="dsr", escape=True, na_rep="",
                      formatters={c: _format_cell for c in df.columns})


def sortable_table_html(df: pd.DataFrame, links: Sequence[str | None] | None = None) -> str:
    """An HTML table whose rows sort by a click on a column header (with :data:`SORT_JS`).

    Parameters
    ----------
    df : DataFrame
        Shown without its index; floats to 4 significant digits, the full
        value in the cell's ``data-v`` attribute (what sorting uses).
    links : sequence of str or None, optional
        One per row: the first cell links to ``#<link>`` (a section anchor).

    Returns
    -------
    str
    """
    if links is not None and len(links) != len(df):
        raise DsrpipeError(f"{len(links)} links for a table of {len(df)} rows")
    head = "".join(f'<th scope="col">{html.escape(str(c))}</th>' for c in df.columns)
    rows = []
    for i, values in enumerate(df.itertuples(index=False, name=None)):
        cells = []
        for j, x in enumerate(values):
            text = html.escape(_format_cell(x)) if not _missing(x) else ""
            if j == 0 and links is not None and links[i]:
                text = f'<a href="#{html.escape(links[i])}">{text}</a>'
            num = isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool) \
                and np.isfinite(x)
            attr = f' data-v="{float(x)!r}"' if num else ""
            cells.append(f"<td{attr}>{text}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table class="dsr sortable"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _missing(x) -> bool:
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def _anchor(i: int) -> str:
    return f"sec-{i}"


def render_report(
    sections: Sequence[ReportSection],
    title: str = "dsrpipe report",
    *,
    dpi: int = 100,
) -> str:
    """Render sections into one self-contained HTML document.

    Parameters
    ----------
    sections : sequence of ReportSection
    title : str
        Document title and top heading.
    dpi : int
        Resolution for figures given as Figure objects.

    Returns
    -------
    str
        A complete HTML5 document: inline CSS, a table of contents, the
        generation time (UTC) and the dsrpipe version, every figure embedded as
        a ``data:image/png;base64`` image. The caller writes it to a file.
    """
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">Generated {stamp} by dsrpipe {html.escape(dsrpipe.__version__)}</p>',
        "<nav><ul>",
        *(f'<li><a href="#{html.escape(s.anchor or _anchor(i))}">{html.escape(s.title)}</a></li>'
          for i, s in enumerate(sections)),
        "</ul></nav>",
    ]
    n_fig = 0
    for i, s in enumerate(sections):
        cls = ' class="warning"' if s.warning else ""
        out.append(f'<section id="{html.escape(s.anchor or _anchor(i))}"{cls}><h2>{html.escape(s.title)}</h2>')
        for para in (p.strip() for p in s.text.split("\n\n")):
            if para:
                out.append(f"<p>{html.escape(para)}</p>")
        if s.html:
            out.append(s.html)
        if s.figures:
            out.append('<div class="figs">')
        for j, fig in enumerate(s.figures):
            out.append(_img(fig, dpi, f"{s.title}, figure {j + 1}"))
            n_fig += 1
        if s.figures:
            out.append("</div>")
        for tab in s.tables:
            caption, df = tab if isinstance(tab, tuple) else ("", tab)
            if caption:
                out.append(f'<p class="caption">{html.escape(caption)}</p>')
            out.append(table_to_html(df))
        out.append("</section>")
    if any("sortable" in s.html for s in sections):
        out.append(f"<script>{SORT_JS}</script>")
    out.append("</body></html>")
    doc = "\n".join(out)
    logger.info("rendered report: %d sections, %d figures, %.1f MB",
                len(sections), n_fig, len(doc) / 1e6)
    return doc
