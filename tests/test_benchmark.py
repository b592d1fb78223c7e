"""The benchmark script runs on the shared evaluation data and prints tables that hold real scores."""
from __future__ import annotations

from pipeline import benchmark
from tests.conftest import shared_image


def table_row(output: str, method: str) -> list[str]:
    for line in output.splitlines():
        if line.startswith(f"| {method} |"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no row for {method!r} in:\n{output}")


def test_alphamatting_benchmark_prints_scores_for_each_method(real_pipeline, capsys):
    shared_image("GT01")  # skips loudly without ../shared
    assert benchmark.main(["--sets", "alphamatting", "--limit", "2", "--no-baseline"]) == 0
    output = capsys.readouterr().out
    raw, square, ours = (table_row(output, method) for method in
                         ("raw model mask", benchmark.SQUARE_LABEL, "ours (automatic)"))
    trimap = table_row(output, "matting given trimap1")
    assert raw[1] == square[1] == ours[1] == trimap[1] == "2"  # two images, none failed
    sad = lambda row: float(row[3])  # SAD mean
    assert sad(ours) < sad(raw) and sad(ours) < sad(square)  # GT01/GT02: refinement beats both raw masks
    assert 0 < sad(trimap) < sad(raw)  # scored in the trimap's unknown region only
    assert "images >10% worse than the raw model mask, square input (SAD):" in output
