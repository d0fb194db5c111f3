"""Embedded datasets: determinism per (name, split, index, seed), shapes, balance, gallery, difficulty."""
import cv2
import numpy as np
import pytest

from convert.errors import UserError
from replicate.datasets import embedded


@pytest.mark.parametrize("name", sorted(embedded.EMBEDDED))
def test_shapes_types_and_labels(name):
    images, labels, classes = embedded.generate(name, "train", 2 * len(embedded.class_names(name)), 48)
    colour = embedded.EMBEDDED[name].colour
    assert images.dtype == np.uint8
    assert images.shape == ((len(labels), 48, 48, 3) if colour else (len(labels), 48, 48))
    assert sorted(set(labels)) == list(range(len(classes)))  # every class, balanced
    assert all(labels.count(k) == 2 for k in range(len(classes)))
    assert images.std() > 10  # not blank


def test_class_names():
    assert embedded.class_names("mini-docs") == [
        "letter", "form", "email", "handwritten", "advertisement", "scientific report", "scientific publication",
        "specification", "file folder", "news article", "budget", "invoice", "presentation", "questionnaire",
        "resume", "memo"]
    assert len(embedded.class_names("mini-objects")) >= 10
    assert set(embedded.class_names("mini-docs-b")).isdisjoint(embedded.class_names("mini-docs"))


@pytest.mark.parametrize("name", sorted(embedded.EMBEDDED))
def test_image_depends_only_on_name_split_index_seed(name):
    batch, labels, _ = embedded.generate(name, "val", 6, 40, seed=3, start=10)
    for k in (0, 5):
        img, label = embedded.image(name, "val", 10 + k, 40, seed=3)
        assert np.array_equal(img, batch[k]) and label == labels[k]
    other_seed, _ = embedded.image(name, "val", 10, 40, seed=4)
    other_split, _ = embedded.image(name, "test", 10, 40, seed=3)
    assert not np.array_equal(other_seed, batch[0]) and not np.array_equal(other_split, batch[0])


def test_parallel_generation_equals_serial():
    serial, labels, _ = embedded.generate("mini-objects", "train", 70, 32, seed=1)
    parallel, labels2, _ = embedded.generate("mini-objects", "train", 70, 32, seed=1, workers=2)
    assert np.array_equal(serial, parallel) and labels == labels2


def test_same_scene_at_every_size():
    """Layout draws do not depend on the size: the small image is close to the large one shrunk."""
    small, _ = embedded.image("mini-docs", "test", 7, 48)
    large, _ = embedded.image("mini-docs", "test", 7, 96)
    shrunk = cv2.resize(large, (48, 48), interpolation=cv2.INTER_AREA).astype(float)
    other, _ = embedded.image("mini-docs", "test", 8, 48)
    assert np.abs(shrunk - small).mean() < 0.5 * np.abs(shrunk - other.astype(float)).mean()


def test_gallery_writes_labelled_png(tmp_path):
    out = embedded.gallery("mini-docs", tmp_path / "g.png", size=40, per_class=3)
    img = cv2.imread(str(out))
    assert img is not None and img.shape[0] >= 16 * 40 and img.shape[1] >= 3 * 40 + 60
    assert not list(tmp_path.glob(".*tmp*"))


def test_bad_names_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="mini-docs"):
        embedded.generate("mnist", "train", 1, 32)
    with pytest.raises(UserError, match="train"):
        embedded.image("mini-docs", "dev", 0, 32)
    with pytest.raises(UserError, match="could not write"):
        embedded.gallery("mini-docs-b", tmp_path / "missing" / "g.png", size=24, per_class=1)


def nearest_centroid_accuracy(name: str, n_train: int, n_test: int, size: int = 48) -> float:
    """Test accuracy of a nearest-centroid classifier on 16x16 pixels (a floor a CNN must beat)."""
    def features(split, count):
        x, y, _ = embedded.generate(name, split, count, size, workers=2)
        f = np.stack([cv2.resize(i, (16, 16), interpolation=cv2.INTER_AREA) for i in x]).astype(np.float32)
        return f.reshape(count, -1) / 255, np.array(y)
    ftr, ytr = features("train", n_train)
    fte, yte = features("test", n_test)
    centroids = np.stack([ftr[ytr == k].mean(0) for k in range(ytr.max() + 1)])
    predicted = ((fte[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    return float((predicted == yte).mean())


def test_mini_docs_is_learnable_but_not_trivial():
    chance = 1 / 16
    accuracy = nearest_centroid_accuracy("mini-docs", 640, 320)
    assert 3 * chance < accuracy < 0.8, accuracy


def test_mini_objects_needs_more_than_pixel_templates():
    """The class hue gives pixels some signal, but the shapes' pose, size, place and clutter defeat templates."""
    chance = 1 / len(embedded.class_names("mini-objects"))
    accuracy = nearest_centroid_accuracy("mini-objects", 640, 320)
    assert 1.5 * chance < accuracy < 0.35, accuracy
