"""Text read from files never reaches the terminal raw: class names, file names and the messages that
quote them show their control and format characters escaped (an escape sequence would recolour or
clear the terminal, a right-to-left override would show a name reversed), and ``data check`` reports
such names as problems."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from contextseg.cli.main import main
from contextseg.data.text import is_printable, printable

ESC_NAME = "road\x1b[31m\x1b]0;pwned\x07"  # recolours the terminal and retitles its window
BIDI_NAME = "car\u202etxt.exe"  # shows as 'carexe.txt'
HOSTILE_FILE = "frame\x1b[2J\u202e\x9b"  # clears the screen; C1 CSI


def raw_controls(text: str) -> list[str]:
    """The control and format characters of ``text`` other than its line breaks."""
    return [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")]


def test_printable_escapes_controls_and_keeps_text():
    assert printable(ESC_NAME) == r"road\x1b[31m\x1b]0;pwned\x07"
    assert printable(BIDI_NAME) == r"car\u202etxt.exe"
    assert printable("a\x7fb\x85c\x9bd\u200be\u2028f\ufeff") == r"a\x7fb\x85c\x9bd\u200be\u2028f\ufeff"
    assert printable("tab\tcr\rnl\n") == r"tab\tcr\rnl\n"
    assert printable("two\nlines\x1b", keep="\n") == "two\nlines\\x1b"
    assert printable(Path("dir\x1b/x.png")) == r"dir\x1b/x.png"
    for fine in ("café", "中文 道路", "Straße", "voiture électrique", "a b"):
        assert printable(fine) == fine and is_printable(fine)
    assert not is_printable(BIDI_NAME) and not is_printable("\x00")


@pytest.fixture(scope="module")
def hostile_dataset(tmp_path_factory):
    """A folder dataset whose class list holds an escape sequence and a bidi override, with one
    image (and its mask) whose file name holds both too, and such a mask without an image."""
    root = tmp_path_factory.mktemp("hostile") / "ds"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for name in ("plain", HOSTILE_FILE):
            Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)).save(root / "images" / split / f"{name}.png")
            Image.fromarray(np.repeat(np.arange(3, dtype=np.uint8), 16)[None].repeat(32, 0)).save(root / "masks" / split / f"{name}.png")
    Image.fromarray(np.zeros((32, 48), np.uint8)).save(root / "masks" / "train" / f"orphan{HOSTILE_FILE}.png")  # a mask without image
    (root / "classes.txt").write_text(f"{ESC_NAME}\n{BIDI_NAME}\ncafé 中文\n")
    return root


def test_data_check_reports_control_characters_escaped(hostile_dataset, capsys):
    assert main(["data", "check", "folder", str(hostile_dataset)]) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert raw_controls(text) == [], text
    lines = [line for line in captured.out.splitlines() if line.startswith("- ")]
    assert any("class 0" in line and printable(ESC_NAME) in line and "classes.txt" in line for line in lines), text
    assert any("class 1" in line and printable(BIDI_NAME) in line for line in lines), text
    assert not any("café" in line for line in lines), text  # accents and CJK are plain text
    assert sum(printable(HOSTILE_FILE) in line and "rename" in line for line in lines) == 4, text  # image and mask, both splits
    assert sum("class 0" in line for line in lines) == 1  # the class list is shared by the splits: said once
    assert any(f"orphan{printable(HOSTILE_FILE)}.png has no image" in line for line in lines), text  # any problem that names a file


def test_train_and_eval_tables_show_class_names_escaped(hostile_dataset, tmp_path, capsys):
    config = {
        "model": {"name": "fcn", "backbone": "resnet18d", "output_stride": 32, "channels": 8, "aux_head": False},
        "data": {"name": "folder", "root": str(hostile_dataset), "crop_size": [32, 48], "num_workers": 0},
        "train": {"max_iters": 1, "batch_size": 2, "eval_interval": 1, "log_interval": 1, "work_dir": str(tmp_path / "run"), "precision": "fp32"},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    assert main(["train", str(tmp_path / "c.yaml")]) == 0
    assert main(["eval", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--precision", "fp32"]) == 0
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert raw_controls(text) == [], text
    for name in (ESC_NAME, BIDI_NAME):
        rows = [line for line in captured.out.splitlines() if line.startswith(printable(name) + " ")]
        assert len(rows) == 2, text  # the table after training and the table of eval
    assert sum(line.startswith("café 中文 ") for line in captured.out.splitlines()) == 2


def test_log_lines_and_error_lines_escape_file_names(tmp_path, capsys):
    from contextseg.cli.main import _one_line
    from contextseg.engine.log import get_logger, setup_logging

    setup_logging()
    log = get_logger("test")
    log.info("wrote %s and %s (%d files)", tmp_path / HOSTILE_FILE, f"{BIDI_NAME}\nfake line", 2)
    log.warning("skipped %s: %s", HOSTILE_FILE, ValueError("cannot read\nfake line"))
    log.info("a table\nof two lines \x1b[2J")
    captured = capsys.readouterr()
    assert raw_controls(captured.out + captured.err) == []
    assert captured.out == f"wrote {tmp_path}/{printable(HOSTILE_FILE)} and {printable(BIDI_NAME)}\\nfake line (2 files)\na table\nof two lines \\x1b[2J\n"
    assert captured.err == f"warning: skipped {printable(HOSTILE_FILE)}: cannot read\\nfake line\n"

    assert _one_line(PermissionError(13, "Permission denied", f"/x/{HOSTILE_FILE}")) == f"Permission denied: /x/{printable(HOSTILE_FILE)}"
    assert _one_line(ValueError(f"class list names {BIDI_NAME}\ntwice")) == f"class list names {printable(BIDI_NAME)} twice"
    # through the command line: a message that quotes a path as it is (the missing gtFine folder)
    root = tmp_path / f"cities{HOSTILE_FILE}"
    root.mkdir()
    assert main(["data", "prepare", "cityscapes", str(root)]) == 2
    captured = capsys.readouterr()
    assert raw_controls(captured.out + captured.err) == [] and printable(HOSTILE_FILE) in captured.err, captured


def test_a_bug_report_and_the_demo_names_show_file_text_escaped(monkeypatch, capsys, tmp_path):
    from contextseg.cli import commands
    from contextseg.cli.demo import _labels_for

    def broken_library(*args, **kwargs):  # a library failing on a file's text, outside the package
        raise ValueError(f"cannot parse {HOSTILE_FILE!s}")

    monkeypatch.setattr(commands, "load_config", broken_library)
    assert main(["train", "train.max_iters=1"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and printable(HOSTILE_FILE) in err and raw_controls(err) == [], err

    run = tmp_path / f"run{HOSTILE_FILE}"
    run.mkdir()
    (run / "best.pt").write_bytes(b"")
    assert _labels_for([run / "best.pt"]) == [f"run{printable(HOSTILE_FILE)}/best.pt"]


def test_predict_and_eval_messages_escape_names_from_files_and_saved_models(tmp_path, capsys, caplog):
    import contextseg as cs

    model = cs.create_model("fcn", num_classes=3, backbone="resnet18d", channels=8, aux_head=False)
    model.meta.update(classes=[ESC_NAME, BIDI_NAME, "x"], palette=[[0, 0, 0], [255, 0, 0], [0, 255, 0]])
    folder = tmp_path / f"model{HOSTILE_FILE}"
    cs.save_pretrained(model, folder)
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(photos / f"{HOSTILE_FILE}.png")
    (photos / f"broken{HOSTILE_FILE}.png").write_bytes(b"not an image")
    assert main(["predict", str(photos), "--checkpoint", str(folder), "--out", str(tmp_path / "out"), "--precision", "fp32"]) == 1
    captured = capsys.readouterr()
    text = captured.out + captured.err
    assert raw_controls(text) == [] and f"skipped {photos}/broken{printable(HOSTILE_FILE)}.png" in captured.err, text
    assert (tmp_path / "out" / f"{HOSTILE_FILE}.png").is_file()  # the file keeps its name: only what is shown is escaped
    assert caplog.records and all(raw_controls(r.getMessage()) == [] for r in caplog.records)  # a program's own handlers too

    # the model's class names quoted by an error (its 3 classes against the synthetic scenes' 9)
    assert main(["eval", "--checkpoint", str(folder), "data.name=synthetic", "data.kwargs={size: [32, 48], length: 1}"]) == 2
    err = capsys.readouterr().err
    assert raw_controls(err) == [] and printable(ESC_NAME) in err and len(err.strip().splitlines()) == 1, err
