"""The benchmark script runs on the shared evaluation data and prints tables that hold real scores."""
from __future__ import annotations

from evaluation import benchmark
from tests.conftest import shared_image


def table_row(output: str, method: str) -> list[str]:
    for line in output.splitlines():
        if line.startswith(f"| {method} |"):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"no row for {method!r} in:\n{output}")


def test_alphamatting_benchmark_prints_scores_for_each_method(real_pipeline, capsys):
    shared_image("GT01")  # skips loudly without ../shared
    assert benchmark.main(["--sets", "alphamatting", "--limit", "2", "--square"]) == 0
    output = capsys.readouterr().out
    raw, square, ours = (table_row(output, method) for method in
                         ("raw model mask", benchmark.SQUARE_LABEL, "ours (automatic)"))
    trimap = table_row(output, "matting given trimap1")
    assert raw[1] == square[1] == ours[1] == trimap[1] == "2"  # two images, none failed
    sad = lambda row: float(row[3])  # SAD mean
    assert sad(ours) <= 1.1 * sad(raw)  # no harm to the model's own mask
    assert sad(ours) != sad(raw)  # GT02's hair is matted: the shipped alpha is not the raw mask
    assert 0 < sad(trimap) < sad(raw)  # scored in the trimap's unknown region only
    assert "images >10% worse than the raw model mask, square input (SAD):" in output


def test_one_gate_scores_raw_and_shipped_on_the_object_sets(real_pipeline, capsys):
    shared_image("GT01")  # skips loudly without ../shared
    assert benchmark.main(["--sets", "sod,dis5k,studio", "--limit", "1"]) == 0
    output = capsys.readouterr().out
    assert "## SOD dev split" in output and "## DIS5K dev (full resolution)" in output
    raw, ours = table_row(output, "raw model mask"), table_row(output, "ours (automatic)")
    assert raw[1] == ours[1] == "1" and 0 < float(ours[3]) < 0.5  # MAE of a real cutout
    assert output.count("images badly harmed (IoU down > 0.1):") == 4
    # The studio set: the first subject of each object set on a plain background, scored the same way.
    studio = output.split("## Studio shots")[1]
    studio_raw, studio_ours = table_row(studio, "raw model mask"), table_row(studio, "ours (automatic)")
    assert studio_raw[1] == studio_ours[1] == "2" and 0 < float(studio_ours[3]) < float(studio_raw[3])
    # ...and its soft-truth part: alphamatting.com's first subject (GT01's plush) matted onto a sweep.
    matte = output.split("## Studio shots, alphamatting.com subjects")[1]
    matte_raw, matte_ours = table_row(matte, "raw model mask"), table_row(matte, "ours (automatic)")
    assert matte_raw[1] == matte_ours[1] == "1" and 0 < float(matte_ours[3]) < float(matte_raw[3])  # SAD
    assert "peak RSS of this process so far" in output
    # The raw mask is ISNet's first view alone; a large DIS5K photo is refined from two views mixed.
    sod, dis = output.split("## Studio shots")[0].split("## DIS5K dev (full resolution)")
    assert table_row(sod, "raw model mask")[3:9] == table_row(sod, benchmark.TWO_VIEWS_LABEL)[3:9]
    assert table_row(dis, "raw model mask")[3:9] != table_row(dis, benchmark.TWO_VIEWS_LABEL)[3:9]


def test_a_run_is_compared_photo_for_photo_with_an_earlier_runs_rows():
    from evaluation.benchmark import change_report

    def rows(*scores):
        return {"ours (automatic)": [{"image": name, "MAE": mae, "IoU": iou, "s": 1.0} for name, mae, iou in scores]}

    earlier = rows(("a", 0.10, 0.80), ("b", 0.10, 0.80), ("c", 0.10, 0.80), ("gone", 0.5, 0.5))
    now = rows(("a", 0.12, 0.80), ("b", 0.05, 0.70), ("c", 0.10, 0.80), ("new", 0.9, 0.1))
    report = change_report(now, earlier, "MAE")
    assert "(3 images in common)" in report
    assert ">10% worse (MAE) 1: a (0.1 -> 0.12)" in report and ">10% better 1" in report
    assert "IoU down > 0.05: 1: b" in report and "largest change of any score 0.1" in report
    assert "largest change of any score 0;" not in report
    assert "largest change of any score 0" in change_report(earlier, earlier, "MAE").split(";")[-1]
    assert "no image in common" in change_report(now, rows(("x", 0.1, 0.9)), "MAE")
