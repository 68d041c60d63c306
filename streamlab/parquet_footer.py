"""Parquet footers without a Parquet library: read the statistics, and merge files by HDFS `concat`.

Why this exists: the landing compaction must merge the small files of an hour *without a single
instant* at which a plain reader sees a record twice or misses one. With name-based visibility
(readers skip `_`/`.` names), every rename or delete changes the visible set by one file or one
directory, so n files can never become one by renames alone (see docs/landing.md). HDFS `concat`
is the one namespace operation that does it: atomically, it appends the blocks of the source
files to the target and removes the sources. Byte-concatenated Parquet files are not a Parquet
file, but they become one if the last source is a footer written for the concatenation:

    F1 | F2 | ... | Fn | footer(row groups of F1..Fn, offsets shifted by the lengths before them)

Readers start from the final footer and follow absolute offsets; the old footers and magic
numbers in the middle are never read. The merged footer drops the page-index pointers (the
offset index stores absolute page offsets inside each file, which cannot be rewritten); readers
fall back to reading without the page index.

Only the standard library is used: this module is shipped to the Spark driver with --py-files.
The Thrift compact protocol codec keeps unknown fields as they are, so footers written by newer
writers survive the round trip.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

MAGIC = b"PAR1"

# Thrift compact protocol type ids.
T_STOP, T_TRUE, T_FALSE, T_BYTE, T_I16, T_I32, T_I64 = 0, 1, 2, 3, 4, 5, 6
T_DOUBLE, T_BINARY, T_LIST, T_SET, T_MAP, T_STRUCT = 7, 8, 9, 10, 11, 12
_BOOL = -1  # internal marker: a struct field holding a bool (its type lives in the field header)


class ParquetFooterError(ValueError):
    """Not a Parquet file, or a footer this module refuses to rewrite (e.g. encrypted)."""


# ---- Thrift compact protocol ------------------------------------------------------------


@dataclass
class TList:
    etype: int
    items: list


@dataclass
class TMap:
    ktype: int
    vtype: int
    items: list  # [(key, value)]


@dataclass
class TStruct:
    """A decoded struct: ordered [field id, type, value] triples (unknown fields included)."""

    fields: list = field(default_factory=list)

    def get(self, fid: int, default=None):
        for f in self.fields:
            if f[0] == fid:
                return f[2]
        return default

    def has(self, fid: int) -> bool:
        return any(f[0] == fid for f in self.fields)

    def set(self, fid: int, ttype: int, value) -> None:
        for f in self.fields:
            if f[0] == fid:
                f[1], f[2] = ttype, value
                return
        self.fields.append([fid, ttype, value])
        self.fields.sort(key=lambda f: f[0])

    def remove(self, fid: int) -> None:
        self.fields = [f for f in self.fields if f[0] != fid]


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ParquetFooterError("truncated Thrift data")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ParquetFooterError("truncated Thrift data")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def value(self, ttype: int):
        if ttype in (T_TRUE, T_FALSE):  # bool element of a list/set/map: one byte
            return self.byte()
        if ttype == T_BYTE:
            return self.byte()
        if ttype in (T_I16, T_I32, T_I64):
            return self.zigzag()
        if ttype == T_DOUBLE:
            return self.take(8)
        if ttype == T_BINARY:
            return self.take(self.varint())
        if ttype in (T_LIST, T_SET):
            header = self.byte()
            size, etype = header >> 4, header & 0x0F
            if size == 15:
                size = self.varint()
            return TList(etype, [self.value(etype) for _ in range(size)])
        if ttype == T_MAP:
            size = self.varint()
            if size == 0:
                return TMap(0, 0, [])
            kv = self.byte()
            kt, vt = kv >> 4, kv & 0x0F
            return TMap(kt, vt, [(self.value(kt), self.value(vt)) for _ in range(size)])
        if ttype == T_STRUCT:
            return self.struct()
        raise ParquetFooterError(f"unknown Thrift compact type {ttype}")

    def struct(self) -> TStruct:
        out = TStruct()
        last = 0
        while True:
            header = self.byte()
            ttype = header & 0x0F
            if ttype == T_STOP:
                return out
            delta = header >> 4
            fid = last + delta if delta else self.zigzag()
            last = fid
            if ttype in (T_TRUE, T_FALSE):
                out.fields.append([fid, _BOOL, ttype == T_TRUE])
            else:
                out.fields.append([fid, ttype, self.value(ttype)])


class _Writer:
    def __init__(self):
        self.out = bytearray()

    def varint(self, n: int) -> None:
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                self.out.append(b | 0x80)
            else:
                self.out.append(b)
                return

    def zigzag(self, n: int) -> None:
        self.varint((n << 1) ^ (n >> 63))

    def value(self, ttype: int, v) -> None:
        if ttype in (T_TRUE, T_FALSE, T_BYTE):
            self.out.append(v & 0xFF)
        elif ttype in (T_I16, T_I32, T_I64):
            self.zigzag(v)
        elif ttype == T_DOUBLE:
            self.out += v
        elif ttype == T_BINARY:
            self.varint(len(v))
            self.out += v
        elif ttype in (T_LIST, T_SET):
            size = len(v.items)
            if size < 15:
                self.out.append((size << 4) | v.etype)
            else:
                self.out.append(0xF0 | v.etype)
                self.varint(size)
            for item in v.items:
                self.value(v.etype, item)
        elif ttype == T_MAP:
            self.varint(len(v.items))
            if v.items:
                self.out.append((v.ktype << 4) | v.vtype)
                for k, val in v.items:
                    self.value(v.ktype, k)
                    self.value(v.vtype, val)
        elif ttype == T_STRUCT:
            self.struct(v)
        else:
            raise ParquetFooterError(f"unknown Thrift compact type {ttype}")

    def struct(self, s: TStruct) -> None:
        last = 0
        for fid, ttype, v in s.fields:
            wire = (T_TRUE if v else T_FALSE) if ttype == _BOOL else ttype
            delta = fid - last
            if 0 < delta <= 15:
                self.out.append((delta << 4) | wire)
            else:
                self.out.append(wire)
                self.zigzag(fid)
            last = fid
            if ttype != _BOOL:
                self.value(ttype, v)
        self.out.append(T_STOP)


def decode_struct(data: bytes) -> TStruct:
    return _Reader(data).struct()


def encode_struct(s: TStruct) -> bytes:
    w = _Writer()
    w.struct(s)
    return bytes(w.out)


# ---- Parquet footer ---------------------------------------------------------------------

# FileMetaData
FMD_SCHEMA, FMD_NUM_ROWS, FMD_ROW_GROUPS, FMD_ENCRYPTION = 2, 3, 4, 8
# RowGroup
RG_COLUMNS, RG_NUM_ROWS, RG_FILE_OFFSET, RG_ORDINAL = 1, 3, 5, 7
# ColumnChunk
CC_FILE_PATH, CC_FILE_OFFSET, CC_META = 1, 2, 3
CC_PAGE_INDEX_FIELDS = (4, 5, 6, 7)  # offset/column index offset and length
CC_ENCRYPTION_FIELDS = (8, 9)
# ColumnMetaData
CMD_TYPE, CMD_PATH, CMD_DATA_PAGE, CMD_INDEX_PAGE, CMD_DICT_PAGE, CMD_STATS, CMD_BLOOM = (
    1, 3, 9, 10, 11, 12, 14,
)  # fmt: skip
# Statistics
ST_MAX, ST_MIN, ST_NULLS, ST_MAX_VALUE, ST_MIN_VALUE = 1, 2, 3, 5, 6
# Physical types
PT_INT32, PT_INT64 = 1, 2


def footer_length(tail: bytes) -> int:
    """Length of the Thrift footer, from the last 8 bytes of a Parquet file."""
    if len(tail) < 8 or tail[-4:] != MAGIC:
        raise ParquetFooterError("not a Parquet file (no PAR1 magic at the end)")
    return struct.unpack("<I", tail[-8:-4])[0]


def read_footer(read_range: Callable[[int, int], bytes], file_length: int) -> TStruct:
    """Decoded FileMetaData of a file, given `read_range(offset, length)` and its length."""
    if file_length < 12:
        raise ParquetFooterError(f"file of {file_length} bytes is too short for Parquet")
    n = footer_length(read_range(file_length - 8, 8))
    if n + 12 > file_length:
        raise ParquetFooterError(f"footer length {n} does not fit in a {file_length}-byte file")
    return decode_struct(read_range(file_length - 8 - n, n))


def _int_stat(raw: bytes | None, ptype: int) -> int | None:
    if raw is None:
        return None
    if ptype == PT_INT32 and len(raw) == 4:
        return struct.unpack("<i", raw)[0]
    if ptype == PT_INT64 and len(raw) == 8:
        return struct.unpack("<q", raw)[0]
    return None


@dataclass(frozen=True)
class ColumnRange:
    min: int | None
    max: int | None


def num_rows(meta: TStruct) -> int:
    return meta.get(FMD_NUM_ROWS, 0)


def int_column_ranges(meta: TStruct) -> dict[str, ColumnRange]:
    """min/max over all row groups of each top-level INT32/INT64 column (None if unknown).

    Row groups without rows are skipped; a non-empty row group without statistics for a
    column makes that column's range unknown.
    """
    out: dict[str, list] = {}
    unknown: set[str] = set()
    for rg in meta.get(FMD_ROW_GROUPS, TList(T_STRUCT, [])).items:
        if not rg.get(RG_NUM_ROWS, 0):
            continue
        for cc in rg.get(RG_COLUMNS).items:
            md = cc.get(CC_META)
            if md is None:
                continue
            ptype = md.get(CMD_TYPE)
            if ptype not in (PT_INT32, PT_INT64):
                continue
            name = b".".join(md.get(CMD_PATH).items).decode()
            stats = md.get(CMD_STATS)
            lo = hi = None
            if stats is not None:
                lo = _int_stat(stats.get(ST_MIN_VALUE, stats.get(ST_MIN)), ptype)
                hi = _int_stat(stats.get(ST_MAX_VALUE, stats.get(ST_MAX)), ptype)
            if lo is None or hi is None:
                unknown.add(name)
                continue
            cur = out.setdefault(name, [lo, hi])
            cur[0], cur[1] = min(cur[0], lo), max(cur[1], hi)
    result = {k: ColumnRange(v[0], v[1]) for k, v in out.items()}
    for name in unknown:
        result[name] = ColumnRange(None, None)
    return result


def _check_not_encrypted(meta: TStruct) -> None:
    if meta.has(FMD_ENCRYPTION):
        raise ParquetFooterError("encrypted Parquet footers are not merged")


def _shift_row_group(rg: TStruct, delta: int, ordinal: int) -> TStruct:
    if rg.has(RG_FILE_OFFSET):
        rg.set(RG_FILE_OFFSET, T_I64, rg.get(RG_FILE_OFFSET) + delta)
    if rg.has(RG_ORDINAL):
        rg.set(RG_ORDINAL, T_I16, ordinal)
    for cc in rg.get(RG_COLUMNS).items:
        if cc.get(CC_FILE_PATH) is not None:
            raise ParquetFooterError("column chunks in other files (file_path) are not merged")
        if any(cc.has(f) for f in CC_ENCRYPTION_FIELDS):
            raise ParquetFooterError("encrypted column chunks are not merged")
        if cc.get(CC_FILE_OFFSET, 0) > 0:
            cc.set(CC_FILE_OFFSET, T_I64, cc.get(CC_FILE_OFFSET) + delta)
        for f in CC_PAGE_INDEX_FIELDS:  # absolute page offsets inside the old file: dropped
            cc.remove(f)
        md = cc.get(CC_META)
        md.set(CMD_DATA_PAGE, T_I64, md.get(CMD_DATA_PAGE) + delta)
        for f in (CMD_INDEX_PAGE, CMD_DICT_PAGE, CMD_BLOOM):
            if md.get(f, 0) > 0:
                md.set(f, T_I64, md.get(f) + delta)
    return rg


def merged_footer(parts: Sequence[tuple[bytes, int]]) -> bytes:
    """Bytes to append after the byte-concatenation of files so that the result is one file.

    `parts`: (encoded FileMetaData, file length) of each file, in concatenation order. Every file
    must have the same schema. Returns footer + 4-byte length + magic.
    """
    if len(parts) < 2:
        raise ParquetFooterError("merging needs at least two files")
    metas = [decode_struct(raw) for raw, _ in parts]
    for m in metas:
        _check_not_encrypted(m)
    schema = encode_struct(TStruct([[1, T_LIST, metas[0].get(FMD_SCHEMA)]]))
    for m in metas[1:]:
        if encode_struct(TStruct([[1, T_LIST, m.get(FMD_SCHEMA)]])) != schema:
            raise ParquetFooterError("files with different schemas cannot be merged")
    out = metas[0]
    row_groups: list[TStruct] = []
    total_rows = 0
    delta = 0
    for meta, (_, length) in zip(metas, parts, strict=True):
        for rg in meta.get(FMD_ROW_GROUPS, TList(T_STRUCT, [])).items:
            row_groups.append(_shift_row_group(rg, delta, len(row_groups)))
        total_rows += meta.get(FMD_NUM_ROWS, 0)
        delta += length
    out.set(FMD_NUM_ROWS, T_I64, total_rows)
    out.set(FMD_ROW_GROUPS, T_LIST, TList(T_STRUCT, row_groups))
    raw = encode_struct(out)
    return raw + struct.pack("<I", len(raw)) + MAGIC


def footer_bytes(read_range: Callable[[int, int], bytes], file_length: int) -> bytes:
    """The raw Thrift FileMetaData of a file (input of `merged_footer`)."""
    n = footer_length(read_range(file_length - 8, 8))
    return read_range(file_length - 8 - n, n)
