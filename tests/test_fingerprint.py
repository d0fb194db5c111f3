"""The code fingerprint in every store key: documentation edits keep it, code edits change it."""
from replicate.config import _meaning


def test_docstrings_and_comments_do_not_count_code_does(tmp_path):
    base = '"""Module doc."""\nX = 1  # why\n\n\ndef f(a):\n    """Doc."""\n    return a + X\n'
    files = {"base": base, "docs": base.replace("Module doc.", "Other words.").replace("# why", "# because"),
             "code": base.replace("a + X", "a - X")}
    meanings = {}
    for name, text in files.items():
        (tmp_path / f"{name}.py").write_text(text)
        meanings[name] = _meaning(tmp_path / f"{name}.py")
    assert meanings["base"] == meanings["docs"] != meanings["code"]


def test_prototxt_comments_do_not_count_values_and_quoted_hashes_do(tmp_path):
    texts = {"a": 'name: "x#1"  # a comment\n# a line\nbase_lr: 0.01\n',
             "b": 'name: "x#1"\nbase_lr: 0.01   # another\n', "c": 'name: "x#2"\nbase_lr: 0.01\n'}
    for name, text in texts.items():
        (tmp_path / f"{name}.prototxt").write_text(text)
    a, b, c = (_meaning(tmp_path / f"{n}.prototxt") for n in "abc")
    assert a == b != c


def test_a_solver_comment_edit_keeps_the_training_key_a_value_edit_does_not(tmp_path):
    import dataclasses
    from replicate.config import get_scale
    from replicate.training import solver_text
    mini = get_scale("mini")
    original = mini.solver_path("rvl-cdip").read_text()
    edits = {"same": original, "comment": "# a new first line\n" + original.replace("# 2/3", "# two thirds"),
             "value": original.replace("base_lr: 0.01", "base_lr: 0.02")}
    texts = {}
    for name, text in edits.items():
        (tmp_path / f"{name}.prototxt").write_text(text)
        texts[name] = solver_text(dataclasses.replace(mini, solver=str(tmp_path / f"{name}.prototxt")), "rvl-cdip")
    assert texts["same"] == texts["comment"] != texts["value"]
    assert "base_lr: 0.02" in texts["value"]
