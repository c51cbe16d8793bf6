"""The one table renderer for the command line's tables: fixed-width columns, two spaces apart."""

from __future__ import annotations

from collections.abc import Collection, Sequence

__all__ = ["format_row", "render_table"]


def format_row(cells: Sequence[str], widths: Sequence[int], right: Collection[int] = (),
               ragged_last: bool = False, *, sep: str = "  ") -> str:
    """One line: cell ``i`` padded to ``widths[i]``, right-aligned when ``i`` is in ``right``; the last cell
    left unpadded when ``ragged_last``; cells joined by ``sep`` (a matrix of right-aligned numbers takes
    ``""`` and wider columns). Trailing spaces are stripped."""
    padded = []
    for i, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        if ragged_last and i == len(cells) - 1:
            padded.append(cell)
        else:
            padded.append(f"{cell:>{width}}" if i in right else f"{cell:<{width}}")
    return sep.join(padded).rstrip()


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = (),
                 ragged_last: bool = False) -> str:
    """Header and rows in aligned columns; each column as wide as its widest cell."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"a row has {len(row)} cells, the header {len(header)}")
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    return "\n".join(format_row(cells, widths, right, ragged_last) for cells in (header, *rows))
