"""``contextseg demo``: the page's logic, and the page itself driven in a real browser (headless
Chromium through Playwright), with every network request recorded."""

from __future__ import annotations

import io
import os
import shutil
import socket
import struct
import zlib
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import yaml
from PIL import Image

from contextseg.cli.main import main

TINY_CPNET = {
    "name": "tiny_cpnet",
    "model": {"name": "cpnet", "backbone": "resnet18d", "output_stride": 32, "channels": 8, "prior_channels": 8, "aux_channels": 8},
    "data": {"name": "synthetic", "kwargs": {"size": [64, 96], "length": 4}, "crop_size": [64, 96], "num_workers": 0},
    "train": {"max_iters": 2, "batch_size": 2, "lr": 0.01, "eval_interval": 2, "log_interval": 1},
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    (root / "c.yaml").write_text(yaml.safe_dump(TINY_CPNET))
    assert main(["train", str(root / "c.yaml"), f"train.work_dir={root / 'run'}"]) == 0
    return root / "run" / "last.pt"


def _bomb_png(path: Path) -> Path:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)) + chunk(b"IEND", b""))
    return path


def test_the_demo_logic_segments_explains_and_refuses_bad_files(checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    from contextseg.cli.demo import Demo

    demo = Demo([checkpoint])
    try:
        name = next(iter(demo.models))
        assert demo.settings(name) == (False, "1")
        example = demo.examples(2)
        assert len(example) == 2 and all(Path(p).parent.parent == demo.workdir for p in example)  # the demo's own folder
        rgb = demo.read(example[0])
        out = demo.segment(name, rgb, flip=False, scales="1")
        model = demo.models[name]
        assert np.array_equal(out["labels"], model.predict(rgb).numpy())
        assert abs(sum(out["shares"].values()) - 1) < 1e-6 and set(out["shares"]) <= set(model.meta["classes"])
        first = demo.context(name, rgb, (3, 4))
        second = demo.context(name, rgb, (90, 60))
        assert [caption for _, caption in first] == ["prior"]
        assert Path(first[0][0]).read_bytes() != Path(second[0][0]).read_bytes()  # another pixel, another prior row
        (tmp_path / "notes.txt").write_text("not an image")
        with pytest.raises(ValueError, match="cannot read image file"):
            demo.read(str(tmp_path / "notes.txt"))
        with pytest.raises(ValueError, match="over the limit"):
            demo.read(str(_bomb_png(tmp_path / "bomb.png")))
        with pytest.raises(ValueError, match="scales"):
            demo.segment(name, rgb, False, "big")
    finally:
        demo.close()
    assert not demo.workdir.exists()


def test_demo_without_a_model_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 2
    err = capsys.readouterr().err
    assert "contextseg train" in err and "--checkpoint" in err and err.count("\n") == 1


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a server and a browser: about half a minute
def test_the_page_in_a_real_browser(checkpoint, tmp_path):
    """Upload a PNG, wait for the overlay, check the label image's colours are the model's classes,
    click two pixels and see the context view change, drop a .txt and read the message; no request
    may leave the machine; a screenshot is saved (CONTEXTSEG_DEMO_SCREENSHOT=path keeps a copy)."""
    pytest.importorskip("gradio")
    playwright = pytest.importorskip("playwright.sync_api")
    if _chromium() is None:
        message = "the browser test needs Chromium: apt-get install chromium"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from contextseg.cli.demo import Demo, build_page, local_theme

    # CONTEXTSEG_DEMO_CHECKPOINT / CONTEXTSEG_DEMO_PHOTO: the README's screenshot, on a trained model and a real photo
    demo = Demo([Path(os.environ.get("CONTEXTSEG_DEMO_CHECKPOINT", checkpoint))])
    page_app = build_page(demo)
    port = _free_port()
    page_app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, theme=local_theme(),
                    allowed_paths=[str(demo.workdir)])
    requests: list[str] = []
    model = next(iter(demo.models.values()))
    palette = {tuple(c) for c in model.meta["palette"]}
    photo = Path(os.environ.get("CONTEXTSEG_DEMO_PHOTO", tmp_path / "street.png"))
    if not photo.exists():
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(photo)
    width, height = Image.open(photo).size
    (tmp_path / "notes.txt").write_text("not an image")
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"http://127.0.0.1:{port}/", wait_until="load")  # never "networkidle": the page keeps a live connection
            page.wait_for_selector("#photo input[type=file]", state="attached", timeout=60_000)
            page.set_input_files("#photo input[type=file]", str(photo))
            page.wait_for_selector("#overlay img", timeout=60_000)
            page.wait_for_selector("#label_map img", timeout=60_000)
            label_src = page.get_attribute("#label_map img", "src")
            shown = Image.open(io.BytesIO(page.request.get(label_src).body()))
            assert shown.height >= 320 and shown.width == shown.height * width // height  # a small photo is shown large enough to click
            colours = np.asarray(shown.convert("RGB")).reshape(-1, 3)
            assert {tuple(c) for c in np.unique(colours, axis=0)} <= palette  # every colour is a class's
            assert f"ms for a {width}x{height} photo" in page.inner_text("#timing")

            def context_after_click(x, y, previous_src):
                page.click("#label_map img", position={"x": x, "y": y})
                page.wait_for_function("([previous]) => { const img = document.querySelector('#context img'); "
                                       "return img !== null && img.src !== previous; }", arg=[previous_src], timeout=60_000)
                return page.get_attribute("#context img", "src"), page.inner_text("#context_note")

            box = page.locator("#label_map img").bounding_box()  # opposite corners: different cells of the 2x3 prior
            first_src, first_note = context_after_click(0.1 * box["width"], 0.1 * box["height"], "")
            second_src, second_note = context_after_click(0.9 * box["width"], 0.9 * box["height"], first_src)
            assert "listens to" in second_note
            assert first_note != second_note
            first = page.request.get(first_src).body()
            second = page.request.get(second_src).body()
            assert first != second  # the context view followed the click
            page.wait_for_timeout(1500)  # let the pictures fade in
            page.screenshot(path=str(tmp_path / "demo.png"), full_page=True)
            if os.environ.get("CONTEXTSEG_DEMO_SCREENSHOT"):
                shutil.copy(tmp_path / "demo.png", os.environ["CONTEXTSEG_DEMO_SCREENSHOT"])

            page.click("#photo button[aria-label=Clear]")  # a file is shown: clear it to drop another
            page.wait_for_selector("#photo input[type=file]", state="attached", timeout=60_000)
            page.set_input_files("#photo input[type=file]", str(tmp_path / "notes.txt"))
            page.wait_for_function("document.querySelector('#status').innerText.includes('cannot read image file')", timeout=60_000)
            assert "notes.txt" in page.inner_text("#status")
            assert page.inner_text("#context_note").strip() == ""  # no note of the previous photo stays beside the error
            browser.close()
    finally:
        page_app.close()
        demo.close()
    outside = [url for url in requests if urlparse(url).scheme in ("http", "https", "ws", "wss") and urlparse(url).hostname not in ("127.0.0.1", "localhost")]
    assert not outside, f"the page reached outside the machine: {outside[:5]}"
    assert requests, "no request recorded: the page did not load"


@pytest.mark.slow  # a server process: about twenty seconds
def test_uploads_stay_in_the_demos_folder_which_sigterm_removes(checkpoint, tmp_path):
    """A photo uploaded to the running page lands in the demo's own temporary folder (not Gradio's
    shared cache), and SIGTERM, like Ctrl-C, ends the demo through the code that removes it."""
    import json
    import signal
    import subprocess
    import sys
    import threading
    import time
    import urllib.request

    pytest.importorskip("gradio")
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "contextseg", "demo", "--checkpoint", str(checkpoint), "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []  # what the demo says, read as it goes (the pipe must not fill up)
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        # ready once it has said its address: the server answers a moment before that line, and a
        # SIGTERM in between would end the demo before it said it
        deadline = time.time() + 120
        while not any(f"on http://127.0.0.1:{port}" in line for line in lines):
            assert proc.poll() is None and time.time() < deadline, "".join(lines) or "no server"
            time.sleep(0.5)
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(buffer, format="PNG")
        boundary = "contextsegboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"street.png\"\r\n"
                "Content-Type: image/png\r\n\r\n").encode() + buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/gradio_api/upload", data=body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        uploaded = Path(json.loads(urllib.request.urlopen(request, timeout=30).read())[0])
        workdirs = list(tmp_path.glob("contextseg-demo-*"))
        assert uploaded.is_file() and len(workdirs) == 1 and workdirs[0] in uploaded.parents, (uploaded, workdirs)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not uploaded.exists() and not list(tmp_path.glob("contextseg-demo-*"))
    reader.join(timeout=30)
    said = "".join(lines)
    assert f"on http://127.0.0.1:{port}" in said and "share=True" not in said, said  # the address, no hint a CLI user cannot act on


def test_small_photos_are_shown_enlarged_and_clicks_map_back():
    from contextseg.cli.demo import MIN_DISPLAY_HEIGHT, display_factor, enlarge

    assert display_factor(96) == 4 and display_factor(320) == 1 and display_factor(1024) == 1
    labels = np.arange(6, dtype=np.uint8).reshape(2, 3)
    big = enlarge(labels, 3)
    assert big.shape == (6, 9) and all(big[y, x] == labels[y // 3, x // 3] for y in range(6) for x in range(9))
    assert 96 * display_factor(96) >= MIN_DISPLAY_HEIGHT
