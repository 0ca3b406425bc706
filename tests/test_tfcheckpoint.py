"""The pure-Python TF checkpoint reader: the official MFF-GAN checkpoints of the data bundle (every variable,
shape and checksum), corruption detection, path resolution, and bundles written here with a minimal
independent SSTable writer (several blocks, shared key prefixes, restart points, scalars, several dtypes)."""

from __future__ import annotations

import csv
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from fusebench.tfcheckpoint import (
    TABLE_MAGIC,
    CheckpointError,
    TFCheckpoint,
    _snappy_decompress,
    crc32c,
    load_checkpoint,
    resolve_prefix,
)

MFFGAN_TF = Path("weights") / "official" / "mffgan-tf"
VARIABLES = Path("reference") / "official-outputs" / "mffgan"


def test_crc32c_known_values() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard check value of CRC-32C
    assert crc32c(b"") == 0
    assert crc32c(b"456789", crc32c(b"123")) == 0xE3069283  # continuation


@pytest.mark.parametrize("model", ["Lytro", "MFI-WHU"])
def test_official_checkpoint_matches_variable_list(shared: Path, model: str) -> None:
    """Every variable the bundle's variables-<model>.csv lists (name, shape, dtype), nothing else, and every
    tensor passes its stored CRC32C."""
    with (shared / VARIABLES / f"variables-{model}.csv").open(newline="") as f:
        expected = {row["name"]: row for row in csv.DictReader(f)}
    ckpt = TFCheckpoint(shared / MFFGAN_TF / f"{model}_model" / "CGAN.model-19")
    assert ckpt.names() == sorted(expected)
    assert ckpt.num_shards == 1
    for name, row in expected.items():
        shape = tuple(int(v) for v in row["shape"].split("x"))
        assert ckpt.entries[name].shape == shape, name
        array = ckpt.read(name)  # verifies the tensor's CRC32C
        assert array.shape == shape and array.dtype == np.float32 and np.isfinite(array).all()
    # the tensors tile the data file exactly: nothing unread, nothing overlapping
    spans = sorted((e.offset, e.size) for e in ckpt.entries.values())
    assert spans[0][0] == 0
    assert all(o1 + s1 == o2 for (o1, s1), (o2, _) in zip(spans, spans[1:], strict=False))
    assert spans[-1][0] + spans[-1][1] == ckpt.shard_path(0).stat().st_size
    generator = sum(v.size for v in ckpt.read_all("fusion_model/").values())
    assert generator == 40_033


def test_path_forms_resolve_to_one_prefix(shared: Path) -> None:
    folder = shared / MFFGAN_TF / "Lytro_model"
    prefix = folder / "CGAN.model-19"
    for form in (
        folder,
        prefix,
        folder / "CGAN.model-19.index",
        folder / "CGAN.model-19.data-00000-of-00001",
    ):
        assert resolve_prefix(form) == prefix
    assert resolve_prefix(folder / "CGAN.model-19.meta") == prefix
    a = load_checkpoint(folder, scope="fusion_model/layer5")
    assert set(a) == {"fusion_model/layer5/b5", "fusion_model/layer5/w5"}


def test_corruption_is_detected(shared: Path, tmp_path: Path) -> None:
    src = shared / MFFGAN_TF / "Lytro_model"
    for f in src.iterdir():  # renamed: a copy under the registered names is refused before it is read
        shutil.copyfile(f, tmp_path / f.name.replace("CGAN", "copy"))
    data = tmp_path / "copy.model-19.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    ckpt = TFCheckpoint(tmp_path)
    entry = ckpt.entries["fusion_model/layer3/w3"]
    raw[entry.offset + 17] ^= 0x01
    data.write_bytes(bytes(raw))
    ckpt = TFCheckpoint(tmp_path)
    with pytest.raises(CheckpointError, match="CRC32C"):
        ckpt.read("fusion_model/layer3/w3")
    assert ckpt.read("fusion_model/layer5/w5").shape == (1, 1, 128, 1)  # other tensors still fine
    assert TFCheckpoint(tmp_path, verify=False).read("fusion_model/layer3/w3").shape == (3, 3, 48, 16)

    index = tmp_path / "copy.model-19.index"
    raw_index = bytearray(index.read_bytes())
    raw_index[40] ^= 0x20  # inside the first data block
    index.write_bytes(bytes(raw_index))
    with pytest.raises(CheckpointError, match="CRC32C"):
        TFCheckpoint(tmp_path)
    index.write_bytes(b"not a table" * 10)
    with pytest.raises(CheckpointError, match="magic"):
        TFCheckpoint(tmp_path)
    with pytest.raises(FileNotFoundError):
        TFCheckpoint(tmp_path / "missing-prefix")


# ------------------------------------------------------------------ an independent minimal bundle writer
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _mask(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int) -> bytes:
    buf, restarts, last = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(buf))
        else:
            while shared < min(len(last), len(key)) and last[shared] == key[shared]:
                shared += 1
        buf += _varint(shared) + _varint(len(key) - shared) + _varint(len(value)) + key[shared:] + value
        last = key
    for r in restarts:
        buf += struct.pack("<I", r)
    return bytes(buf + struct.pack("<I", len(restarts)))


def _with_trailer(block: bytes) -> bytes:
    return block + b"\x00" + struct.pack("<I", _mask(crc32c(block + b"\x00")))


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint(number << 3 | wire) + payload


def _entry(dtype: int, shape: tuple[int, ...], offset: int, data: bytes) -> bytes:
    dims = b"".join(_field(2, 2, _varint(len(d)) + d) for d in (_field(1, 0, _varint(s)) for s in shape))
    return (
        _field(1, 0, _varint(dtype))
        + _field(2, 2, _varint(len(dims)) + dims)
        + (_field(4, 0, _varint(offset)) if offset else b"")
        + _field(5, 0, _varint(len(data)))
        + _field(6, 5, struct.pack("<I", _mask(crc32c(data))))
    )


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray], per_block: int = 2) -> None:
    dtypes = {np.dtype("float32"): 1, np.dtype("float64"): 2, np.dtype("int32"): 3, np.dtype("int64"): 9,
              np.dtype("bool"): 10, np.dtype("float16"): 19}  # fmt: skip
    data, entries = bytearray(), []
    for name in sorted(tensors):
        raw = np.ascontiguousarray(tensors[name]).astype(tensors[name].dtype.newbyteorder("<")).tobytes()
        entries.append((name.encode(), _entry(dtypes[tensors[name].dtype], tensors[name].shape, len(data), raw)))
        data += raw
    header = _field(1, 0, _varint(1)) + _field(3, 2, _varint(2) + _field(1, 0, _varint(1)))
    entries.insert(0, (b"", header))
    table, index = bytearray(), []
    for i in range(0, len(entries), per_block):
        chunk = entries[i : i + per_block]
        block = _block(chunk, restart_interval=3)
        index.append((chunk[-1][0], _varint(len(table)) + _varint(len(block))))
        table += _with_trailer(block)
    meta = _block([], 1)
    meta_at = len(table)
    table += _with_trailer(meta)
    index_block = _block(index, 1)
    index_at = len(table)
    table += _with_trailer(index_block)
    handles = _varint(meta_at) + _varint(len(meta)) + _varint(index_at) + _varint(len(index_block))
    table += handles + b"\x00" * (40 - len(handles)) + struct.pack("<Q", TABLE_MAGIC)
    prefix.with_name(prefix.name + ".index").write_bytes(bytes(table))
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))


def test_reads_a_bundle_written_independently(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        "net/block1/conv/kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
        "net/block1/conv/bias": rng.standard_normal(4).astype(np.float32),
        "net/block1/bn/gamma": rng.standard_normal(4).astype(np.float64),
        "net/block2/conv/kernel": rng.standard_normal((1, 1, 4, 1)).astype(np.float16),
        "net/step": np.array(123456789012, dtype=np.int64),  # a scalar
        "net/ids": np.arange(-3, 4, dtype=np.int32),
        "net/mask": np.array([True, False, True]),
    }
    write_bundle(tmp_path / "model.ckpt-7", tensors)
    ckpt = TFCheckpoint(tmp_path / "model.ckpt-7.index")
    assert ckpt.names() == sorted(tensors)
    for name, expected in tensors.items():
        got = ckpt.read(name)
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        assert np.array_equal(got, expected), name
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-7"\n')
    assert resolve_prefix(tmp_path) == tmp_path / "model.ckpt-7"
    with pytest.raises(KeyError, match="not in checkpoint"):
        ckpt.read("net/nothing")


def test_snappy_blocks() -> None:
    # literal "abcd", copy (1-byte offset) of 8 bytes at distance 4, copy (2-byte offset) of 3 at distance 2
    stream = _varint(15) + b"\x0cabcd" + b"\x11\x04" + bytes([(3 - 1) << 2 | 2]) + struct.pack("<H", 2)
    assert _snappy_decompress(stream) == b"abcdabcdabcdcdc"
    with pytest.raises(CheckpointError):
        _snappy_decompress(_varint(5) + b"\x0cabcd")
