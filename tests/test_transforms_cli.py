"""`replicate transforms list|apply|gallery`: apply equals the API, gallery writes distinct panels."""
import json
import math

import cv2
import numpy as np
import pytest

from replicate.cli import main
from replicate.transforms import FAMILIES
from replicate.transforms.gallery import GAP, LABEL_HEIGHT, synthetic_image


def read(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("channels", [0, 3])
@pytest.mark.parametrize("family,args,params", [
    ("rotation", ["angle=-12.5"], {"angle": -12.5}),
    ("shear", ["angle=20", "orientation=v"], {"angle": 20.0, "orientation": "v"}),
    ("elastic", ["alpha=10", "sigma=2.5"], {"alpha": 10.0, "sigma": 2.5, "seed": 9}),
    ("perspective", ["sigma=0.001"], {"sigma": 0.001, "seed": 9}),
    ("noise", ["sigma=12", "per_channel=true"], {"sigma": 12.0, "seed": 9, "per_channel": True}),
    ("color_jitter", ["shift=-20"], {"shift": (-20,)}),
    ("blur", ["sigma=1.7"], {"sigma": 1.7}),
    ("mirror", ["flip=flip_ud"], {"flip": "flip_ud"}),
    ("crop", ["resize=90", "crop=64", "x=3", "y=26"], {"resize": 90, "crop": 64, "x": 3, "y": 26}),
])
def test_apply_gives_exactly_the_api_array(tmp_path, family, args, params, channels):
    image = synthetic_image("ilsvrc" if channels else "rvl-cdip", 64)
    cv2.imwrite(str(tmp_path / "in.png"), image)
    seed = ["--seed", "9"] if "seed" in params else []
    argv = ["transforms", "apply", str(tmp_path / "in.png"), "--family", family, "--out", str(tmp_path / "out.png")]
    assert main(argv + [a for p in args for a in ("--param", p)] + seed) == 0
    out = read(tmp_path / "out.png")
    assert out.shape == (image.shape if family != "crop" else (64, 64) + image.shape[2:])  # grey stays grey
    np.testing.assert_array_equal(out, FAMILIES[family].apply(image, **params))
    assert b"replicate" in (tmp_path / "out.png").read_bytes()  # parameters recorded in the PNG


def test_apply_rejects_bad_parameters(tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "in.png"), synthetic_image("rvl-cdip", 32))
    base = ["transforms", "apply", str(tmp_path / "in.png"), "--out", str(tmp_path / "out.png")]
    assert main(base + ["--family", "rotate"]) == 2
    assert "rotation" in capsys.readouterr().err
    assert main(base + ["--family", "rotation", "--param", "theta=3"]) == 2
    assert "angle" in capsys.readouterr().err
    assert main(base + ["--family", "rotation", "--seed", "3"]) == 2
    assert main(base + ["--family", "blur", "--param", "sigma=abc"]) == 2
    assert not (tmp_path / "out.png").exists()


@pytest.mark.parametrize("family,dataset", [("rotation", "rvl-cdip"), ("elastic", "ilsvrc"), ("crop", "rvl-cdip")])
def test_gallery_writes_a_png_of_distinct_panels(tmp_path, family, dataset):
    out = tmp_path / "g.png"
    assert main(["transforms", "gallery", "--family", family, "--dataset", dataset, "--size", "64",
                 "--out", str(out)]) == 0
    sheet = read(out)
    n = 1 + len(FAMILIES[family].measurement_grid(64))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    assert sheet.shape[:2] == (rows * (64 + LABEL_HEIGHT + GAP), cols * (64 + GAP))
    assert sheet.ndim == (3 if dataset == "ilsvrc" else 2)
    panels = [sheet[(i // cols) * (64 + LABEL_HEIGHT + GAP):][:64, (i % cols) * (64 + GAP):][:, :64].tobytes()
              for i in range(n)]
    if family == "crop":  # the reference is the centre crop r2c2, every other window differs
        assert panels[0] == panels[1 + 12] and len(set(panels)) == n - 1
    else:
        assert len(set(panels)) == n
    record = out.read_bytes()
    meta = json.loads(record[record.index(b"replicate\0") + 10:record.index(b"IEND") - 8].decode("latin-1"))
    assert meta["family"] == family and len(meta["grid"]) == n - 1


def test_gallery_uses_an_image_file(tmp_path):
    cv2.imwrite(str(tmp_path / "in.png"), synthetic_image("ilsvrc", 100))
    out = tmp_path / "g.png"
    assert main(["transforms", "gallery", "--family", "mirror", "--image", str(tmp_path / "in.png"),
                 "--size", "48", "--out", str(out)]) == 0
    assert read(out).shape == (2 * (48 + LABEL_HEIGHT + GAP), 2 * (48 + GAP), 3)


def test_list_names_every_family_parameter_and_grid(capsys):
    assert main(["transforms", "list"]) == 0
    text = capsys.readouterr().out
    for family in FAMILIES.values():
        assert text.count(f"{family.name}  ({family.title})") == 1
        for p in family.params:
            assert f"param {p.name} [{p.unit}]" in text
    assert "+45" in text and "r4c4" in text and "flip_ud" in text


def test_gallery_compare_stacks_the_proxy_over_the_papers_grid_shrunk(tmp_path, capsys):
    out = tmp_path / "g.png"
    assert main(["transforms", "gallery", "--family", "noise", "--size", "48", "--compare", "--out", str(out)]) == 0
    sheet = read(out)
    n = 1 + len(FAMILIES["noise"].measurement_grid(48))
    cols = math.ceil(math.sqrt(n))
    half = LABEL_HEIGHT + math.ceil(n / cols) * (48 + LABEL_HEIGHT + GAP)
    assert sheet.shape == (2 * half + 2 * GAP, cols * (48 + GAP))
    proxy_ref = sheet[LABEL_HEIGHT:LABEL_HEIGHT + 48, :48]
    paper_ref = sheet[half + 2 * GAP + LABEL_HEIGHT:][:48, :48]
    np.testing.assert_array_equal(proxy_ref, paper_ref)   # both references: the 227-px picture shrunk to 48 px
    assert main(["transforms", "gallery", "--family", "noise", "--compare", "--out", str(tmp_path / "x.png")]) == 2
    assert "--size below" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
