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
    """

    title: str
    text: str = ""
    figures: list[Figure | bytes] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    warning: bool = False


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
        *(f'<li><a href="#{_anchor(i)}">{html.escape(s.title)}</a></li>'
          for i, s in enumerate(sections)),
        "</ul></nav>",
    ]
    n_fig = 0
    for i, s in enumerate(sections):
        cls = ' class="warning"' if s.warning else ""
        out.append(f'<section id="{_anchor(i)}"{cls}><h2>{html.escape(s.title)}</h2>')
        for para in (p.strip() for p in s.text.split("\n\n")):
            if para:
                out.append(f"<p>{html.escape(para)}</p>")
        for j, fig in enumerate(s.figures):
            out.append(_img(fig, dpi, f"{s.title}, figure {j + 1}"))
            n_fig += 1
        for tab in s.tables:
            caption, df = tab if isinstance(tab, tuple) else ("", tab)
            if caption:
                out.append(f'<p class="caption">{html.escape(caption)}</p>')
            out.append(table_to_html(df))
        out.append("</section>")
    out.append("</body></html>")
    doc = "\n".join(out)
    logger.info("rendered report: %d sections, %d figures, %.1f MB",
                len(sections), n_fig, len(doc) / 1e6)
    return doc
