"""Training data sources: shapes, folders, caption pairs, COCO JSON, fake data; corrupt
images are skipped and counted."""

import json

import pytest
from lverse.data import shapes
from lverse.data.sources import (
    CaptionFolderSource,
    CocoSource,
    FakeSource,
    ImageFolderSource,
    ShapesSource,
    from_spec,
)
from PIL import Image


def test_shapes_scenes_are_deterministic_and_held_out():
    a, cap_a = shapes.scene(7)
    b, cap_b = shapes.scene(7)
    assert cap_a == cap_b and a.tobytes() == b.tobytes()
    assert a.size == (64, 64)
    assert cap_a == shapes.caption_of(shapes.layout(7))
    train, held = ShapesSource(), ShapesSource(held_out=True)
    assert held.item(3)[1] == shapes.scene(shapes.HELD_OUT_SEED + 3)[1]
    assert train.item(3)[1] == shapes.scene(3)[1]
    assert set(" ".join(shapes.scene(s)[1] for s in range(300)).split()) <= set(shapes.vocabulary())
    with pytest.raises(ValueError, match="seed must be a non-negative int"):
        shapes.scene(-1)


def test_two_object_captions_follow_row_major_order():
    assert shapes.caption_of([("small", "red", "circle", 0), ("large", "blue", "square", 1)]) == \
        "a small red circle left of a large blue square"
    assert shapes.caption_of([("small", "red", "circle", 1), ("large", "blue", "square", 7)]) == \
        "a small red circle above a large blue square"
    assert shapes.caption_of([("small", "red", "circle", 2), ("large", "blue", "square", 3)]) == \
        "a small red circle above and right of a large blue square"
    assert shapes.caption_of([("large", "white", "cross", 4)]) == "a large white cross at the center"


def make_tree(tmp_path):
    (tmp_path / "cls").mkdir()
    for i in range(3):
        Image.new("RGB", (20, 20), (i * 80, 0, 0)).save(tmp_path / "cls" / f"im{i}.png")
    (tmp_path / "cls" / "im0.txt").write_text("a red thing\nanother caption\n")
    (tmp_path / "cls" / "im1.txt").write_text("a dark thing\n")
    (tmp_path / "cls" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    (tmp_path / "cls" / "broken.txt").write_text("never seen\n")
    return tmp_path


def test_folder_sources_skip_and_count_corrupt_images(tmp_path):
    root = make_tree(tmp_path)
    folder = ImageFolderSource(root, size=16)
    assert len(folder) == 4
    images, captions = folder.batch(range(4))
    assert images.shape == (4, 3, 16, 16) and captions == [None] * 4
    assert folder.skipped == 1
    pairs = CaptionFolderSource(root, size=16)
    assert [c for _, c in pairs.pairs] == ["never seen", "a red thing", "another caption", "a dark thing"]
    images, captions = pairs.batch([0])
    assert captions == ["a red thing"] and pairs.skipped == 1


def test_coco_source(tmp_path):
    root = make_tree(tmp_path)
    annotations = tmp_path / "captions.json"
    annotations.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "im0.png"}, {"id": 2, "file_name": "im2.png"}],
        "annotations": [{"image_id": 1, "caption": "A red square. "}, {"image_id": 2, "caption": "Blue."}],
    }))
    coco = CocoSource(annotations, root / "cls", size=8)
    images, captions = coco.batch([0, 1])
    assert captions == ["A red square.", "Blue."] and images.shape == (2, 3, 8, 8)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a COCO captions file"):
        CocoSource(bad, root)
    with pytest.raises(FileNotFoundError):
        CocoSource(tmp_path / "none.json", root)


def test_fake_and_specs(tmp_path):
    fake = FakeSource(size=12, length=5)
    images, captions = fake.batch([0, 1])
    assert images.shape == (2, 3, 12, 12) and all(isinstance(c, str) for c in captions)
    assert fake.item(0)[1] == FakeSource(size=12).item(0)[1]
    assert isinstance(from_spec("shapes", 64), ShapesSource)
    with pytest.raises(ValueError, match="unknown data source"):
        from_spec("imagenet", 64)
    with pytest.raises(FileNotFoundError, match="data directory not found"):
        from_spec(f"folder:{tmp_path / 'missing'}", 64)
