"""The zoo: Table 3's row set per dataset, docs/protocol.md's training ranges, lookup, widest helper, CLI."""
from collections import Counter

import pytest

from convert.errors import UserError
from replicate import cli, paper, zoo

# docs/protocol.md's training ranges, typed here independently of paper_tables/zoo.csv
PROTOCOL_RANGES = {
    "color_jitter": [{"sigma": s} for s in (5, 10, 15, 20)],
    "crop": [{"resize": s} for s in (240, 256, 288, 320)],
    "elastic": [{"sigma": s, "alpha_max": a} for s, a in ((2, 5), (2, 10), (3, 5), (3, 10))],
    "blur": [{"s_max": 1.5}, {"s_max": 3}],
    "noise": [{"s_max": s} for s in (5, 10, 15, 20)],
    "mirror": [{"flip": "flip_ud"}, {"flip": "flip_lr"}, {"flip": "flip_both"}],
    "perspective": [{"s_max": s} for s in (0.001, 0.002, 0.003, 0.004)],
    "rotation": [{"t": t} for t in (5, 10, 15, 20)],
    "shear": [{"t": t} for t in (5, 10, 15, 20)],
    "baseline": [{}, {}, {}],
}


@pytest.mark.parametrize("dataset", paper.DATASETS)
def test_row_set_matches_table3(dataset):
    nets = zoo.nets(dataset)
    assert [(n.name, n.family) for n in nets] == [(r.net, r.family) for r in paper.table3()]
    assert len({n.id for n in nets}) == len(nets) == 36


@pytest.mark.parametrize("dataset", paper.DATASETS)
def test_training_ranges_follow_protocol(dataset):
    for family, expected in PROTOCOL_RANGES.items():
        got = [n.params for n in zoo.nets(dataset, family)]
        assert sorted(map(sorted, map(dict.items, got))) == sorted(map(sorted, map(dict.items, expected))), family


def test_mirror_horz_is_the_up_down_flip():
    for dataset in paper.DATASETS:
        assert zoo.get("Mirror Horz.", dataset).params == {"flip": "flip_ud"}
        assert zoo.get("Mirror Vert.", dataset).params == {"flip": "flip_lr"}


def test_seeds_distinct_and_baselines_differ():
    for dataset in paper.DATASETS:
        nets = zoo.nets(dataset)
        assert len({n.seed for n in nets}) == len(nets)
    assert Counter(n.dataset for n in zoo.nets()) == {"rvl-cdip": 36, "ilsvrc": 36}


def test_range_rank_orders_single_parameter_families():
    for family in ("color_jitter", "crop", "blur", "noise", "perspective", "rotation", "shear"):
        nets = zoo.nets("rvl-cdip", family)
        values = [next(iter(n.params.values())) for n in nets]
        assert [n.range_rank for n in sorted(nets, key=lambda n: next(iter(n.params.values())))] == \
            sorted(n.range_rank for n in nets)
        assert len(set(values)) == len({n.range_rank for n in nets}) == len(nets)


def test_widest_per_family():
    widest = {f: zoo.widest("ilsvrc", f).id for f in zoo.FAMILIES}
    assert widest == {"baseline": "baseline_1", "color_jitter": "color_jitter_20", "crop": "crop_320",
                      "elastic": "elastic_s2_a10", "blur": "blur_3", "noise": "noise_20",
                      "mirror": "mirror_ud_lr", "perspective": "perspective_0.004", "rotation": "rotation_20",
                      "shear": "shear_20"}


def test_paper_finetuned_the_widest_nets_except_crop():
    for table in ("table2", "table4"):
        rows = paper.finetune_table(table)
        for family in {r.family for r in rows}:
            finetuned = {r.net for r in rows if r.family == family}
            expected = "Crop 256x256" if family == "crop" else zoo.widest(rows[0].dataset, family).name
            assert finetuned == {expected}


def test_lookup_by_name_or_id_case_insensitive():
    assert zoo.get("rotation_10", "ilsvrc") == zoo.get("ROTATION θ = ±10", "ilsvrc")
    assert zoo.get("Elastic σ = 2, α = 10", "rvl-cdip").params == {"sigma": 2, "alpha_max": 10}


def test_unknown_names_list_valid_ones():
    with pytest.raises(UserError, match=r"unknown net 'rotation_25'.*rotation_20 \(Rotation θ = ±20\)"):
        zoo.get("rotation_25", "rvl-cdip")
    with pytest.raises(UserError, match="rvl-cdip"):
        zoo.nets("andoc")
    with pytest.raises(UserError, match="shear"):
        zoo.nets(family="warp")


def test_cli_zoo_list(capsys):
    assert cli.main(["zoo", "list", "--dataset", "rvl-cdip"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["dataset", "id", "name"]
    assert len(lines) == 1 + 36 + 1 and lines[-1] == "36 nets"
    assert all(line.startswith("rvl-cdip") for line in lines[1:-1])
    assert any("mirror_ud " in line and "flip=flip_ud" in line for line in lines)
    assert cli.main(["zoo", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "72 nets"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["zoo", "list", "--dataset", "mnist"])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("dataset", paper.DATASETS)
def test_every_zoo_net_is_a_training_config_of_its_transform_family(dataset):
    from replicate.transforms import FAMILIES
    for net in zoo.nets(dataset):
        if net.family != "baseline":
            assert dict(net.params) in [dict(c) for c in FAMILIES[net.family].training], net.name


def test_code_convention_trains_perspective_nets_with_a_tenth_of_the_papers_range():
    for net in zoo.nets("rvl-cdip", "perspective"):
        code = zoo.as_trained_by(net, "code")
        assert code.params["s_max"] == pytest.approx(net.params["s_max"] / 10, abs=1e-15)
        assert (code.id, code.name, code.seed) == (net.id + "-code", net.name, net.seed)
        assert zoo.get(code.id, "rvl-cdip") == code and zoo.as_trained_by(net, "paper") == net
    assert zoo.as_trained_by(zoo.widest("ilsvrc", "perspective"), "code").params == {"s_max": 0.0004}
    shear = zoo.widest("rvl-cdip", "shear")
    assert zoo.as_trained_by(shear, "code") == shear   # only perspective's labels disagree with the code
    with pytest.raises(UserError, match="expected one of paper, code"):
        zoo.as_trained_by(shear, "authors")
    with pytest.raises(UserError, match="unknown net 'shear_20-code'"):
        zoo.get("shear_20-code", "rvl-cdip")
