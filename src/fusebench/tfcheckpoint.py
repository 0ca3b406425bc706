"""Read TensorFlow (1.x and 2.x) checkpoints in pure Python: no TensorFlow needed.

A TF "V2" checkpoint (what ``tf.train.Saver`` writes by default since TF 1.0) is a *tensor bundle*:

* ``<prefix>.index``: an immutable sorted key/value table in LevelDB's SSTable format. The empty key holds a
  ``BundleHeaderProto`` (number of data shards, endianness); every other key is a tensor name and its value
  a serialized ``BundleEntryProto`` (dtype, shape, shard id, byte offset and size in that shard, masked
  CRC32C of the bytes).
* ``<prefix>.data-SSSSS-of-NNNNN``: the shards, the raw tensor bytes one after another (little-endian,
  C order; a TF conv kernel is HWIO, ``[kh, kw, in, out]``).

This module implements exactly what reading such a checkpoint needs:

* the SSTable layout (48-byte footer with magic ``0xdb4775248b80fb57``, index block -> data blocks,
  prefix-compressed keys with restart points, 5-byte block trailers with a masked CRC32C, optional Snappy
  block compression);
* a minimal protocol-buffers wire-format decoder for the two messages above;
* CRC32C (Castagnoli) to verify every block and every tensor read.

Only numeric (and bool) tensors are supported; string tensors and partitioned ("sliced") variables raise a
clear error. Usage::

    ckpt = TFCheckpoint("weights/official/mffgan-tf/Lytro_model/CGAN.model-19")
    ckpt.names()                      # sorted variable names
    w = ckpt.read("fusion_model/layer1/w1")   # numpy array, HWIO
    state = ckpt.read_all("fusion_model/")    # every tensor under a scope
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .weights import check_known_file

__all__ = [
    "CheckpointError",
    "TFCheckpoint",
    "TensorEntry",
    "crc32c",
    "load_checkpoint",
    "resolve_prefix",
]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type (1 byte) + masked crc32c (4 bytes)
NO_COMPRESSION, SNAPPY_COMPRESSION = 0, 1

#: tensorflow/core/framework/types.proto -> numpy (little-endian; the bundle header states the byte order)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    8: np.dtype("<c8"),  # DT_COMPLEX64
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    18: np.dtype("<c16"),  # DT_COMPLEX128
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}
DT_STRING, DT_BFLOAT16 = 7, 14


class CheckpointError(ValueError):
    """The files are not a readable TF tensor bundle, or fail their checksums."""


#: what to do about an unreadable checkpoint file (said by every error that names one)
ADVICE = "delete the checkpoint's files and fetch or copy them again (e.g. `fusebench fetch-weights NAME`)"


# ------------------------------------------------------------------------------------------------ CRC32C
def _crc32c_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) of ``data``, continuing from ``crc``; ``crc32c(b"123456789") == 0xE3069283``."""
    table = _CRC_TABLE
    crc ^= 0xFFFFFFFF
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    """Undo LevelDB/TF's CRC masking: ``masked = rotr15(crc) + 0xa282ead8``."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# ---------------------------------------------------------------------------------- varints and protobuf
def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointError("varint longer than 64 bits")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a serialized protobuf message; groups are not supported."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", buf, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", buf, pos)[0], pos + 4
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class TensorEntry:
    """One ``BundleEntryProto``: where a tensor lives and what it is."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None  # masked, as stored
    sliced: bool = False

    @property
    def numpy_dtype(self) -> np.dtype:
        if self.dtype not in DTYPES:
            raise CheckpointError(f"{self.name}: TF dtype {self.dtype} is not supported by this reader")
        return DTYPES[self.dtype]


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for number, _wire, value in _fields(buf):
        if number == 2:  # repeated Dim dim
            size = 0
            for n, _w, v in _fields(value):  # type: ignore[arg-type]
                if n == 1:
                    size = _signed64(v)  # type: ignore[arg-type]
            dims.append(size)
        elif number == 3 and value:  # unknown_rank
            raise CheckpointError("tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    dtype = shard = offset = size = 0
    shape: tuple[int, ...] = ()
    crc: int | None = None
    sliced = False
    for number, _wire, value in _fields(buf):
        if number == 1:
            dtype = int(value)  # type: ignore[arg-type]
        elif number == 2:
            shape = _parse_shape(value)  # type: ignore[arg-type]
        elif number == 3:
            shard = int(value)  # type: ignore[arg-type]
        elif number == 4:
            offset = _signed64(value)  # type: ignore[arg-type]
        elif number == 5:
            size = _signed64(value)  # type: ignore[arg-type]
        elif number == 6:
            crc = int(value)  # type: ignore[arg-type]
        elif number == 7:
            sliced = True
    return TensorEntry(name, dtype, shape, shard, offset, size, crc, sliced)


def _parse_header(buf: bytes) -> tuple[int, int]:
    """(num_shards, endianness) of a ``BundleHeaderProto`` (endianness 0 = little, 1 = big)."""
    shards, endianness = 1, 0
    for number, _wire, value in _fields(buf):
        if number == 1:
            shards = int(value)  # type: ignore[arg-type]
        elif number == 2:
            endianness = int(value)  # type: ignore[arg-type]
    return shards, endianness


# ---------------------------------------------------------------------------------------------- SSTable
def _snappy_decompress(data: bytes) -> bytes:
    """Raw Snappy (the block format LevelDB uses), for tables written with Snappy compression."""
    length, pos = _varint(data, 0)
    out = bytearray()
    while pos < len(data):
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            n = tag >> 2
            if n >= 60:
                extra = n - 59
                n = int.from_bytes(data[pos : pos + extra], "little")
                pos += extra
            n += 1
            out += data[pos : pos + n]
            pos += n
            continue
        if kind == 1:
            n = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            n = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 2], "little")
            pos += 2
        else:
            n = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise CheckpointError("corrupt Snappy block")
        for _ in range(n):  # copies may overlap their own output
            out.append(out[-offset])
    if len(out) != length:
        raise CheckpointError("corrupt Snappy block (length mismatch)")
    return bytes(out)


def _block(table: bytes, offset: int, size: int, verify: bool) -> bytes:
    end = offset + size
    if end + BLOCK_TRAILER_SIZE > len(table):
        raise CheckpointError("block handle points past the end of the index file")
    contents = table[offset:end]
    kind = table[end]
    if verify:
        stored = struct.unpack_from("<I", table, end + 1)[0]
        if crc32c(table[offset : end + 1]) != _unmask(stored):
            raise CheckpointError(f"index block at {offset} fails its CRC32C")
    if kind == NO_COMPRESSION:
        return contents
    if kind == SNAPPY_COMPRESSION:
        return _snappy_decompress(contents)
    raise CheckpointError(f"index block at {offset} uses unknown compression {kind}")


def _block_entries(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointError("index block too short")
    restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * restarts
    if limit < 0:
        raise CheckpointError("corrupt index block (restart array)")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _table_entries(table: bytes, verify: bool) -> Iterator[tuple[bytes, bytes]]:
    if len(table) < FOOTER_SIZE:
        raise CheckpointError("index file too short for an SSTable footer")
    footer = table[-FOOTER_SIZE:]
    if struct.unpack_from("<Q", footer, FOOTER_SIZE - 8)[0] != TABLE_MAGIC:
        raise CheckpointError("not an SSTable (bad magic): is this a TF V2 checkpoint .index file?")
    _meta_offset, pos = _varint(footer, 0)
    _meta_size, pos = _varint(footer, pos)
    index_offset, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    for _last_key, handle in _block_entries(_block(table, index_offset, index_size, verify)):
        offset, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        yield from _block_entries(_block(table, offset, size, verify))


# ------------------------------------------------------------------------------------------- checkpoint
_DATA_RE = re.compile(r"^(?P<prefix>.+)\.data-\d{5}-of-\d{5}$")


def resolve_prefix(path: str | Path) -> Path:
    """The checkpoint prefix for a prefix, its ``.index``, one of its ``.data-*`` files, its ``.meta``, or a
    folder (through its ``checkpoint`` state file, else its only ``*.index``)."""
    path = Path(path)
    if path.is_dir():
        state = path / "checkpoint"
        if state.is_file():
            match = re.search(r'^model_checkpoint_path:\s*"(.+)"', state.read_text(), re.MULTILINE)
            if match:
                candidate = Path(match.group(1))
                candidate = candidate if candidate.is_absolute() else path / candidate.name
                if candidate.with_name(candidate.name + ".index").is_file():
                    return candidate
        indexes = sorted(path.glob("*.index"))
        if len(indexes) != 1:
            raise CheckpointError(f"{path}: expected one *.index checkpoint in the folder, found {len(indexes)}")
        return indexes[0].with_suffix("")
    name = path.name
    match = _DATA_RE.match(name)
    if match:
        return path.with_name(match.group("prefix"))
    if name.endswith((".index", ".meta")):
        return path.with_name(name.rsplit(".", 1)[0])
    return path


class TFCheckpoint:
    """A TF V2 checkpoint (tensor bundle), read lazily: the index at construction, tensors on demand."""

    def __init__(self, path: str | Path, verify: bool = True) -> None:
        self.prefix = resolve_prefix(path)
        self.verify = verify
        index = self.prefix.with_name(self.prefix.name + ".index")
        if not index.is_file():
            raise FileNotFoundError(f"no TF checkpoint index {index}")
        check_known_file(index)
        self.entries: dict[str, TensorEntry] = {}
        header: tuple[int, int] | None = None
        try:
            for key, value in _table_entries(index.read_bytes(), verify):
                if key == b"":
                    header = _parse_header(value)
                else:
                    name = key.decode("utf-8")
                    self.entries[name] = _parse_entry(name, value)
        except CheckpointError as exc:
            size = index.stat().st_size
            raise CheckpointError(f"{index} ({size} bytes) is truncated or corrupt: {exc}; {ADVICE}") from None
        if header is None:
            raise CheckpointError(f"{index}: no bundle header (empty key); not a tensor bundle index")
        self.num_shards, endianness = header
        if endianness != 0:
            raise CheckpointError(f"{index}: big-endian bundles are not supported")
        self._shards: dict[int, bytes] = {}

    # -- listing
    def names(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: self.entries[name].shape for name in self.names()}

    # -- reading
    def shard_path(self, shard: int) -> Path:
        return self.prefix.with_name(f"{self.prefix.name}.data-{shard:05d}-of-{self.num_shards:05d}")

    def _shard(self, shard: int) -> bytes:
        if shard not in self._shards:
            path = self.shard_path(shard)
            if not path.is_file():
                raise FileNotFoundError(f"missing TF checkpoint data shard {path}")
            check_known_file(path)
            self._shards[shard] = path.read_bytes()
        return self._shards[shard]

    def read(self, name: str) -> np.ndarray:
        """Tensor ``name`` as a numpy array (a copy, native byte order)."""
        try:
            entry = self.entries[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in checkpoint {self.prefix}") from None
        if entry.sliced:
            raise CheckpointError(f"{name}: partitioned (sliced) variables are not supported")
        if entry.dtype == DT_STRING:
            raise CheckpointError(f"{name}: string tensors are not supported")
        if entry.dtype == DT_BFLOAT16:
            raise CheckpointError(f"{name}: bfloat16 tensors are not supported")
        dtype = entry.numpy_dtype
        count = int(np.prod(entry.shape, dtype=np.int64))
        if count * dtype.itemsize != entry.size:
            raise CheckpointError(
                f"{name}: {entry.size} bytes stored for shape {entry.shape} of {dtype} "
                f"({count * dtype.itemsize} expected)"
            )
        data = self._shard(entry.shard_id)
        shard = self.shard_path(entry.shard_id)
        if entry.offset < 0 or entry.offset + entry.size > len(data):
            raise CheckpointError(
                f"{shard} is truncated: it has {len(data)} bytes, but tensor {name} lies at bytes "
                f"{entry.offset}..{entry.offset + entry.size}; {ADVICE}"
            )
        raw = data[entry.offset : entry.offset + entry.size]
        if self.verify and entry.crc32c is not None and crc32c(raw) != _unmask(entry.crc32c):
            raise CheckpointError(f"{shard} is corrupt: the bytes of tensor {name} fail their CRC32C; {ADVICE}")
        array = np.frombuffer(raw, dtype=dtype, count=count).reshape(entry.shape)
        return array.astype(dtype.newbyteorder("="), copy=True)

    def read_all(self, scope: str = "") -> dict[str, np.ndarray]:
        """Every tensor whose name starts with ``scope``, by name."""
        return {name: self.read(name) for name in self.names() if name.startswith(scope)}


def load_checkpoint(path: str | Path, scope: str = "", verify: bool = True) -> dict[str, np.ndarray]:
    """Shortcut: every tensor (under ``scope``) of the checkpoint at ``path``."""
    return TFCheckpoint(path, verify=verify).read_all(scope)
