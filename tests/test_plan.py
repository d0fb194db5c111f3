"""`replicate plan`: the paper's work counted from the experiments' definitions; hours from a calibration."""
import json

import pytest

from replicate import cli, plan
from replicate.config import get_scale


def read_plan(out, scale: str) -> dict:
    return json.loads((out / "plan" / scale / "plan.json").read_text())


def rows_by(body: dict) -> dict[tuple[str, str], dict]:
    return {(r["experiment"], r["dataset"]): r for r in body["rows"]}


def test_paper_plan_counts_the_papers_work(tmp_path, capsys):
    assert cli.main(["plan", "--scale", "paper", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    rows = rows_by(read_plan(tmp_path, "paper"))
    rvl, ilsvrc = rows[("table3", "rvl-cdip")], rows[("table3", "ilsvrc")]
    assert (rvl["nets"], ilsvrc["nets"]) == (36, 36)                       # 72 CaffeNets
    assert rvl["iterations"] == 36 * 500_000 and ilsvrc["iterations"] == 36 * 450_000
    assert rvl["train_images"] == 36 * 500_000 * 32 and ilsvrc["train_images"] == 36 * 450_000 * 256
    distance = [rows[("fig3+fig11+fig12", d)]["maps"] for d in ("rvl-cdip", "ilsvrc")]
    assert distance == [36 * 35, 36 * 35] and sum(distance) == 2520       # every ordered pair of a dataset
    assert rows[("fig3+fig11+fig12", "ilsvrc")]["map_work"] == {"50000x4096": 1260}   # 50K train images, fc7
    assert rows[("table2", "rvl-cdip")]["finetuned"] == 9 and rows[("table4", "ilsvrc")]["finetuned"] == 9
    for dataset in ("rvl-cdip", "ilsvrc"):   # shared jobs once: the total is below the sum of the rows
        parts = [r for (name, d), r in rows.items() if d == dataset and name != "total"]
        total = rows[("total", dataset)]
        assert total["nets"] == 36 and total["maps"] < sum(r["maps"] for r in parts)
        assert max(r["maps"] for r in parts) < total["maps"]
        assert total["worker_hours"] is None
    assert "andoc: split sizes unknown without --data-root" in printed and "rerun with --calibrate" in printed
    assert (tmp_path / "plan" / "paper" / "plan.md").read_text() in printed


def test_calibration_gives_hours_and_a_later_plan_reuses_it(tmp_path):
    base = ["plan", "--scale", "smoke", "--dataset", "rvl-cdip", "--out", str(tmp_path), "--quiet", "--workers", "2"]
    assert cli.main([*base, "--calibrate", "--iterations", "2"]) == 0
    body = read_plan(tmp_path, "smoke")
    calibration = body["calibration"]["rvl-cdip"]
    assert calibration["train_images_per_second"] > 0 and calibration["forward_images_per_second"] > 0
    assert calibration["threads"] == 1 and calibration["batch"] == 32   # one worker, the smoke net's batch
    total = rows_by(body)[("total", "rvl-cdip")]
    expected = plan.hours(plan.Cost(train_images=total["train_images"], forward_images=total["forward_images"],
                                    map_work={tuple(map(int, k.split("x"))): n for k, n in total["map_work"].items()}),
                          calibration)
    assert total["worker_hours"]["total"] == pytest.approx(expected["total"], abs=1e-3)
    assert total["wall_hours"] == pytest.approx(total["worker_hours"]["total"] / 2, abs=1e-3)
    assert cli.main(base) == 0   # no --calibrate: the stored calibration gives the hours
    assert rows_by(read_plan(tmp_path, "smoke"))[("total", "rvl-cdip")]["worker_hours"] == total["worker_hours"]


def test_map_seconds_extrapolates_fixed_cost_by_dim_cubed_and_per_sample_by_dim_squared():
    measured = {"dim": 1, "samples": [2, 4], "seconds": [3.0, 5.0]}   # 1 s fixed + 1 s per sample at dim 1
    assert plan.map_seconds(10, 2, measured) == pytest.approx(1 * 8 + 10 * 4)


def test_train_batch_and_width_come_from_the_scale_prototxts():
    assert plan.train_batch(get_scale("paper"), "ilsvrc") == 256 and plan.train_batch(get_scale("paper"), "rvl-cdip") == 32
    assert plan.fc7_width(get_scale("paper"), "ilsvrc") == 4096


@pytest.mark.parametrize("args, expected", [
    (["--iterations", "0"], "--iterations 0: expected at least 1"),
    (["--dataset", "mnist"], "unknown dataset 'mnist'"),
    (["--workers", "0"], "--workers 0: expected a number of processes >= 1"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, expected):
    assert cli.main(["plan", "--scale", "smoke", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


def test_a_corrupt_calibration_is_named(tmp_path, capsys):
    path = tmp_path / "plan" / "smoke" / "calibration-rvl-cdip-cpu.json"
    path.parent.mkdir(parents=True)
    path.write_text("{truncated")
    assert cli.main(["plan", "--scale", "smoke", "--dataset", "rvl-cdip", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "rerun with --calibrate" in err
