"""`thoughtlens heads`: the head wiki (circuit toolkit commands)."""

from __future__ import annotations

import typer

from thoughtlens.cli import _common as c


@c.command
def heads(
    models: list[str] = typer.Argument(None, help="Models (hub id, local dir or .gguf); default: the bundled model."),
    out: str = typer.Option(
        "head_wiki", "--out", "--output", "-o", help="Directory for <model>.csv / .parquet and mosaic.png."
    ),
    dtype: str = typer.Option(None, "--dtype", help="fp32 / bf16 (default: bf16 where the CPU has it)."),
    top: int = typer.Option(10, "--top", help="Rows of the induction ranking to print per model."),
) -> None:
    """The head wiki: every head's previous-token, duplicate-token, induction and BOS scores, plus a mosaic."""
    from rich.table import Table

    from thoughtlens.circuits.head_wiki import head_table, write_head_wiki
    from thoughtlens.model.load import load

    err = c.console()
    tables = []
    for name in models or [None]:
        with err.status(f"scoring heads of {name or 'the bundled model'}"):
            tables.append(head_table(load(name, dtype=dtype)))
    paths = write_head_wiki(tables, out)
    cols = ("induction", "induction_x_median", "previous_token", "duplicate_token", "bos")
    for df in tables:
        table = Table(title=f"{df['model'].iloc[0]}: top induction heads")
        for col in ("layer", "head", *cols):
            table.add_column(col, justify="right")
        for row in df.sort_values("induction", ascending=False).head(top).itertuples():
            table.add_row(str(row.layer), str(row.head), *(f"{getattr(row, k):.3f}" for k in cols))
        c.stdout().print(table)
    err.print(f"wrote {', '.join(str(p) for p in paths)}")
