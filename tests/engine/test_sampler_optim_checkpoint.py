import itertools
import random

import numpy as np
import pytest
import torch
from torch import nn

from contextseg.engine.checkpoints.checkpoint import find_resume, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from contextseg.engine.config import TrainConfig
from contextseg.engine.training.optim import PolyLR, build_optimizer, build_scheduler
from contextseg.engine.training.sampler import InfiniteSampler


def take(sampler, n):
    return list(itertools.islice(iter(sampler), n))


def test_sampler_epochs_are_permutations_and_resume_continues_exactly():
    s = InfiniteSampler(10, seed=3)
    first = take(s, 25)
    assert sorted(first[:10]) == list(range(10)) and sorted(first[10:20]) == list(range(10))
    assert first[:10] != first[10:20]
    assert take(InfiniteSampler(10, seed=3, start=13), 12) == first[13:25]


def test_sampler_shards_ranks_disjointly():
    shards = [take(InfiniteSampler(10, seed=1, rank=r, world_size=3), 4) for r in range(3)]
    epoch = sorted(i for shard in shards for i in shard)
    assert set(epoch) == set(range(10)) and len(epoch) == 12  # 10 padded to 12 by wrap-around


def test_poly_schedule_values_and_floor():
    poly = PolyLR(max_iters=100, power=0.9, min_ratio=1e-4)
    assert poly(0) == 1.0
    assert poly(50) == pytest.approx(0.5 ** 0.9)
    assert poly(100) == 1e-4
    warm = PolyLR(max_iters=100, warmup_iters=10, warmup_ratio=0.1)
    assert warm(0) == pytest.approx(0.1) and warm(5) == pytest.approx(0.55 * (0.95 ** 0.9))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(2, 2)
        self.decode_head = nn.Linear(2, 2)
        self.aux_head = nn.Linear(2, 2)


def test_param_groups_lr_mult_and_weight_decay_rules():
    cfg = TrainConfig(lr=0.01, weight_decay=5e-4, head_lr_mult=10, paramwise=[{"pattern": "aux_head.*", "lr_mult": 2, "weight_decay": 1e-4}], max_iters=10)
    model = Net()
    opt = build_optimizer(model, cfg)
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert by_param[id(model.backbone.weight)]["lr"] == pytest.approx(0.01)
    assert by_param[id(model.decode_head.bias)]["lr"] == pytest.approx(0.1)
    assert by_param[id(model.aux_head.weight)]["lr"] == pytest.approx(0.02)
    assert by_param[id(model.aux_head.weight)]["weight_decay"] == 1e-4
    assert by_param[id(model.decode_head.weight)]["weight_decay"] == 5e-4
    sched = build_scheduler(opt, cfg)
    for _ in range(5):
        opt.step()
        sched.step()
    assert by_param[id(model.decode_head.bias)]["lr"] == pytest.approx(0.1 * 0.5 ** 0.9)


def test_checkpoint_is_atomic_and_loads_weights_only(tmp_path):
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint({"model": {"w": torch.ones(2)}, "iteration": 3, "config": {"a": [1, 2]}, "rng": rng_state()}, path)
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temp file left behind
    ck = load_checkpoint(path)
    assert ck["iteration"] == 3 and torch.equal(ck["model"]["w"], torch.ones(2))

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(OSError, match="last.pt: disk full; nothing partial was left"):  # one line naming the file
        save_checkpoint({"bad": Boom()}, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))  # the old file survived
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def test_rng_state_roundtrip_through_a_checkpoint(tmp_path):
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3), random.random())
    save_checkpoint({"rng": state}, tmp_path / "r.pt")
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    b = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_untrusted_or_missing_checkpoints_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    assert find_resume(tmp_path, "auto") is None
    assert find_resume(tmp_path, False) is None
    with pytest.raises(FileNotFoundError):
        find_resume(tmp_path, str(tmp_path / "missing.pt"))


# -- what a torch file makes torch.load allocate, checked before it is loaded ------------------------
def _records(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info.filename)) for info in archive.infolist()]


def _rezip(source, path, method):
    """The records of ``source`` (a torch.save archive) in a new archive written by zipfile."""
    import zipfile

    with zipfile.ZipFile(path, "w", method) as out:
        for name, data in _records(source):
            out.writestr(name, data)
    return path


def _central_entries(blob: bytes):
    """(offset, name) of each central directory entry of a zip in ``blob``."""
    at, found = blob.find(b"PK\x01\x02"), []
    while at >= 0:
        name_len = int.from_bytes(blob[at + 28:at + 30], "little")
        found.append((at, blob[at + 46:at + 46 + name_len].decode()))
        at = blob.find(b"PK\x01\x02", at + 46 + name_len)
    return found


def test_a_compressed_torch_archive_is_refused_before_it_expands(tmp_path):
    """torch.save stores records uncompressed; a deflated record of zeros (here 40 MB in a 40 kB
    file, ~1000x) would be inflated in memory by torch.load: refused on the central directory."""
    from contextseg.engine.checkpoints.files import read_torch_file

    honest = tmp_path / "honest.pt"
    torch.save({"w": torch.zeros(10_000_000)}, honest)
    bomb = _rezip(honest, tmp_path / "bomb.pt", __import__("zipfile").ZIP_DEFLATED)
    assert bomb.stat().st_size < honest.stat().st_size / 500
    with pytest.raises(ValueError, match=r"^cannot read checkpoint '.*bomb\.pt': record '.*' is compressed \(zip method 8\)") as err:
        load_checkpoint(bomb)
    assert "\n" not in str(err.value)
    stored = _rezip(honest, tmp_path / "stored.pt", __import__("zipfile").ZIP_STORED)  # another writer, stored: reads
    assert read_torch_file(stored)["w"].shape == (10_000_000,)


def test_torch_archive_sizes_must_agree_and_fit_in_the_file(tmp_path):
    torch.save({"w": torch.arange(1000.0)}, tmp_path / "a.pt")
    blob = (tmp_path / "a.pt").read_bytes()
    entry = next(at for at, name in _central_entries(blob) if name.endswith("data/0"))

    def forged(name, at, value):
        path = tmp_path / name
        path.write_bytes(blob[:at] + value + blob[at + len(value):])
        return path

    big = (1 << 31).to_bytes(4, "little")
    with pytest.raises(ValueError, match=r"forged\.pt': record '.*data/0' declares 2147483648 bytes, more than the file holds"):
        load_checkpoint(forged("forged.pt", entry + 20, big + big))  # compressed and uncompressed size in the central directory
    with pytest.raises(ValueError, match=r"uneven\.pt': record '.*data/0' declares 2147483648 bytes but stores 4000"):
        load_checkpoint(forged("uneven.pt", entry + 24, big))
    # sizes in the local header (zipfile's writer puts them there) that disagree with the central directory
    plain = _rezip(tmp_path / "a.pt", tmp_path / "plain.pt", __import__("zipfile").ZIP_STORED).read_bytes()
    local = max(i for i in range(len(plain)) if plain.startswith(b"PK\x03\x04", i) and i < plain.find(b"data/0"))
    (tmp_path / "local.pt").write_bytes(plain[:local + 18] + (8000).to_bytes(4, "little") * 2 + plain[local + 26:])
    with pytest.raises(ValueError, match=r"local\.pt': record '.*data/0': its local header declares 8000 bytes, the central directory 4000"):
        load_checkpoint(tmp_path / "local.pt")
    (tmp_path / "method.pt").write_bytes(plain[:local + 8] + b"\x08\x00" + plain[local + 10:])
    with pytest.raises(ValueError, match=r"method\.pt': record '.*data/0': its local header disagrees with the central directory"):
        load_checkpoint(tmp_path / "method.pt")


def test_torch_archive_records_that_overlap_are_refused(tmp_path):
    """Many central directory entries naming one stored record: each within the file, together
    far more than it (every byte read many times over)."""
    torch.save({"w": torch.arange(1000.0)}, tmp_path / "a.pt")
    blob = _rezip(tmp_path / "a.pt", tmp_path / "plain.pt", __import__("zipfile").ZIP_STORED).read_bytes()  # no zip64 records to rewrite
    entries = _central_entries(blob)
    start, end = entries[0][0], blob.rfind(b"PK\x05\x06")
    data_entry = next(blob[at:nxt] for (at, name), nxt in zip(entries, [e[0] for e in entries[1:]] + [end]) if name.endswith("data/0"))
    directory = blob[start:end] + data_entry * 20
    count = len(entries) + 20
    eocd = b"PK\x05\x06" + bytes(4) + count.to_bytes(2, "little") * 2 + len(directory).to_bytes(4, "little") + start.to_bytes(4, "little") + bytes(2)
    (tmp_path / "overlap.pt").write_bytes(blob[:start] + directory + eocd)
    with pytest.raises(ValueError, match=r"overlap\.pt': its records declare \d+ bytes in all, more than the file's \d+"):
        load_checkpoint(tmp_path / "overlap.pt")


def test_torch_files_are_read_within_a_settable_budget(tmp_path, monkeypatch):
    from contextseg.engine.checkpoints.files import read_torch_file

    path = tmp_path / "w.pt"
    torch.save({"w": torch.zeros(100_000)}, path)  # 400 kB of tensors
    monkeypatch.setenv("CONTEXTSEG_MAX_LOAD_BYTES", "1e5")
    with pytest.raises(ValueError, match=r"w\.pt': its tensors would take 4\d{5} bytes in memory, more than the limit of 100000 bytes \(set CONTEXTSEG_MAX_LOAD_BYTES"):
        load_checkpoint(path)
    monkeypatch.setenv("CONTEXTSEG_MAX_LOAD_BYTES", "lots")
    with pytest.raises(ValueError, match=r"CONTEXTSEG_MAX_LOAD_BYTES='lots': expected a positive number of bytes"):
        load_checkpoint(path)
    monkeypatch.delenv("CONTEXTSEG_MAX_LOAD_BYTES")
    assert read_torch_file(path)["w"].shape == (100_000,)
    with pytest.raises(ValueError, match=r"more than the limit of 1000 bytes"):
        read_torch_file(path, max_bytes=1000)


def _legacy_file(path, declared: int, stored: int = 4):
    """A legacy (pre-zip) torch file whose one float storage declares ``declared`` elements and
    holds ``stored``: torch.load allocates what the pickle declares before reading the bytes."""
    import collections
    import io
    import pickle
    import struct

    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    marker = object()

    class Tensor:
        def __reduce__(self):
            return torch._utils._rebuild_tensor_v2, (marker, 0, (stored,), (1,), False, collections.OrderedDict())

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", declared, None) if obj is marker else None

    buf = io.BytesIO()
    for obj in (MAGIC_NUMBER, PROTOCOL_VERSION, {"protocol_version": PROTOCOL_VERSION, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(obj, buf, protocol=2)
    Pickler(buf, protocol=2).dump({"w": Tensor()})
    pickle.dump(["0"], buf, protocol=2)
    buf.write(struct.pack("<q", stored) + struct.pack(f"<{stored}f", *range(stored)))
    path.write_bytes(buf.getvalue())
    return path


def test_a_legacy_torch_file_declaring_more_than_it_holds_is_refused(tmp_path):
    assert load_checkpoint(_legacy_file(tmp_path / "honest.pt", 4))["w"].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"huge\.pt': it declares tensors of 4096\.0 GiB, more than the file's \d+ bytes hold"):
        load_checkpoint(_legacy_file(tmp_path / "huge.pt", 1 << 40))
    torch.save({"w": torch.zeros(100_000)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    assert load_checkpoint(tmp_path / "old.pt")["w"].shape == (100_000,)  # torch's own legacy writer: read
    with pytest.raises(ValueError, match=r"old\.pt': its tensors would take 400000 bytes in memory, more than the limit of 1000 bytes"):
        __import__("contextseg.engine.checkpoints.files", fromlist=["x"]).read_torch_file(tmp_path / "old.pt", max_bytes=1000)


def test_a_forged_safetensors_header_length_is_refused_unallocated(tmp_path):
    """The first 8 bytes of a .safetensors file say how long its JSON header is: 2^60 must be
    refused on the number, never allocated, wherever a .safetensors file is read."""
    import contextseg as cs
    from contextseg.backbones.timm_backbone import load_backbone_weights

    forged = (1 << 60).to_bytes(8, "little") + b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}' + bytes(4)
    (tmp_path / "w.safetensors").write_bytes(forged)
    with pytest.raises(ValueError, match=r"^cannot read checkpoint '.*w\.safetensors': its header length field says 1152921504606846976 bytes, "
                                         r"but the file holds only \d+ after it"):
        load_checkpoint(tmp_path / "w.safetensors")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    (tmp_path / "m" / "model.safetensors").write_bytes((200_000_000).to_bytes(8, "little") + bytes(1))
    with pytest.raises(ValueError, match=r"saved model weights '.*model\.safetensors': its header length field says 200000000 bytes"):
        cs.from_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match=r"pretrained_backbone '.*w\.safetensors': its header length field says"):
        load_backbone_weights(torch.nn.Linear(1, 1), tmp_path / "w.safetensors")
    from safetensors.torch import save_file

    from contextseg.engine.checkpoints.files import check_safetensors_file

    save_file({"w": torch.zeros(1000)}, str(tmp_path / "ok.safetensors"))
    assert load_checkpoint(tmp_path / "ok.safetensors")["model"]["w"].shape == (1000,)
    with pytest.raises(ValueError, match=r"ok\.safetensors': its tensors would take 4000 bytes in memory, more than the limit of 100 bytes"):
        check_safetensors_file(tmp_path / "ok.safetensors", max_bytes=100)
    (tmp_path / "short.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(ValueError, match=r"short\.safetensors': 2 bytes is too short for a safetensors file"):
        load_checkpoint(tmp_path / "short.safetensors")


def test_a_compressed_pretrained_backbone_is_refused_before_it_expands(tmp_path):
    from contextseg.backbones.timm_backbone import load_backbone_weights

    torch.save({"weight": torch.zeros(1, 1), "bias": torch.zeros(1)}, tmp_path / "honest.pth")
    bomb = _rezip(tmp_path / "honest.pth", tmp_path / "bomb.pth", __import__("zipfile").ZIP_DEFLATED)
    with pytest.raises(ValueError, match=r"^cannot read pretrained_backbone '.*bomb\.pth': record '.*' is compressed"):
        load_backbone_weights(torch.nn.Linear(1, 1), bomb)
    load_backbone_weights(torch.nn.Linear(1, 1), tmp_path / "honest.pth")
