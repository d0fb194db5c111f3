"""Panels of lines over a measurement grid -> PNG and PDF (matplotlib Agg), written atomically."""
from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

from convert.protoio import atomic_write  # noqa: E402


@dataclass
class Line:
    """One plotted series: legend label, y per x position, colour and line style."""
    label: str
    values: list[float]
    color: str
    style: str = "-"


@dataclass
class Panel:
    """One subplot: title, x tick labels (the family's grid), y axis label and its lines."""
    title: str
    xlabels: list[str]
    ylabel: str
    xlabel: str
    lines: list[Line] = field(default_factory=list)


def draw(panels: list[Panel], columns: int, suptitle: str, footer: str, out_stem: Path) -> list[Path]:
    """Draw the panels on a grid; write out_stem.png and out_stem.pdf; return their paths."""
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels):
        x = list(range(len(panel.xlabels)))
        for line in panel.lines:
            ax.plot(x, line.values, line.style, color=line.color, label=line.label, marker=".", linewidth=1.3)
        step = max(1, len(x) // 12)   # at most ~12 tick labels keep the 25 crop windows readable
        ax.set_xticks(x[::step], panel.xlabels[::step], rotation=60, fontsize=7)
        ax.set_title(panel.title, fontsize=9)
        ax.set_xlabel(panel.xlabel, fontsize=8)
        ax.set_ylabel(panel.ylabel, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="best")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(suptitle, fontsize=11)
    fig.text(0.01, 0.005, footer, fontsize=6, va="bottom")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    return save(fig, out_stem)


def save(fig: plt.Figure, stem: Path) -> list[Path]:
    """stem.png and stem.pdf, each written atomically (nothing cut off at the edges); closes the figure."""
    paths = [stem.with_suffix(suffix) for suffix in (".png", ".pdf")]
    for path in paths:
        buffer = io.BytesIO()
        fig.savefig(buffer, format=path.suffix[1:], dpi=110, bbox_inches="tight")
        atomic_write(path, buffer.getvalue())
    plt.close(fig)
    return paths
