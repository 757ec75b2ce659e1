"""Reading fetched Kafka records so that a record nobody can decode becomes a rejection, not a crash.

aiokafka decodes a partition's fetched batches in C and raises at the first record it cannot
read (a header key that is not UTF-8, a codec it lacks, a corrupt batch). The error escapes the
fetch, Faust's fetcher dies, and every restart fetches the same record again. Here the C decoder
reads as usual; when it raises, the rest of *that partition's* fetch is read again in Python,
record by record. Readable records are handed on as usual. Each offset that cannot be read is
handed on as an *unreadable* record (its value the bytes that could be read) and noted in
``UNREADABLE`` with the reason, so the persistence agent rejects it instead of parsing it; the
partition's position moves past it, and the other partitions are not touched.

aiokafka's fetcher builds its ``MemoryRecords`` and ``PartitionRecords`` by those names in
``aiokafka.consumer.fetcher`` (aiokafka 0.14); ``install`` puts the two classes here in their place.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Iterator

import aiokafka.consumer.fetcher as aiokafka_fetcher
from aiokafka.record.default_records import DefaultRecordBase, _DefaultRecordBatchPy
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import decode_varint
from aiokafka.structs import ConsumerRecord, TopicPartition

log = logging.getLogger(__name__)

Position = tuple[str, int, int]

UNREADABLE: dict[Position, str] = {}
"""(topic, partition, offset) of each unreadable record handed on, and why it could not be read."""

FRAMING = struct.Struct(">qi")  # a batch's base offset and length, before the rest of the batch
LAST_OFFSET_DELTA = struct.Struct(">i")
LAST_OFFSET_DELTA_AT = struct.calcsize(">qiibIh")
MOST_UNREADABLE_OFFSETS = 100_000
"""Most offsets of one unreadable batch handed on as rejections; past that, they are skipped."""


def unreadable_reason(position: Position) -> str | None:
    """Why the record at ``position`` could not be read, or None if it was read."""
    return UNREADABLE.get(position)


def forget(positions: list[Position]) -> None:
    """Drop these records' reasons once their rejections are acknowledged."""
    for position in positions:
        UNREADABLE.pop(position, None)


class KeptRecords:
    """aiokafka's (C) ``MemoryRecords`` over a partition's fetched bytes, keeping the bytes to read again."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._records = MemoryRecords(data)

    def size_in_bytes(self) -> int:
        return self._records.size_in_bytes()

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self) -> object:
        return self._records.next_batch()


class SalvagingPartitionRecords(aiokafka_fetcher.PartitionRecords):
    """aiokafka's records of one partition's fetch; after a decoding error, the rest read leniently."""

    def _unpack_records(self) -> Iterator[ConsumerRecord]:
        try:
            yield from super()._unpack_records()
        except Exception as exc:  # noqa: BLE001 - whatever C raised, the Python reader names the cause
            log.warning("Could not decode records of %s[%d] from offset %d (%s: %s); reading them"
                        " one by one, unreadable ones become rejections.", self._tp.topic,
                        self._tp.partition, self.next_fetch_offset, type(exc).__name__, exc)
            yield from self._salvage()

    def _salvage(self) -> Iterator[ConsumerRecord]:
        for base_offset, batch in batch_slices(self._records.data):
            end = next_offset(base_offset, batch)
            if end <= self.next_fetch_offset:
                continue
            for record in read_batch(self._tp, base_offset, batch, end, self._check_crcs):
                if record.offset >= self.next_fetch_offset:
                    self.next_fetch_offset = record.offset + 1
                    yield record
            self.next_fetch_offset = max(self.next_fetch_offset, end)


def install() -> None:
    """Make aiokafka's fetcher read with ``KeptRecords`` and ``SalvagingPartitionRecords``."""
    aiokafka_fetcher.MemoryRecords = KeptRecords
    aiokafka_fetcher.PartitionRecords = SalvagingPartitionRecords


def batch_slices(data: bytes) -> Iterator[tuple[int, memoryview]]:
    """Each whole batch of a fetch, with its base offset; a partial batch at the end is left out."""
    view, pos = memoryview(data), 0
    while pos + FRAMING.size <= len(data):
        base_offset, length = FRAMING.unpack_from(data, pos)
        end = pos + FRAMING.size + length
        if length < 0 or end > len(data):
            return
        yield base_offset, view[pos:end]
        pos = end


def next_offset(base_offset: int, batch: memoryview) -> int:
    """The offset after a batch's last record (after its base offset, if even that cannot be read)."""
    if len(batch) < LAST_OFFSET_DELTA_AT + LAST_OFFSET_DELTA.size or batch[16] < 2:
        return base_offset + 1
    (delta,) = LAST_OFFSET_DELTA.unpack_from(batch, LAST_OFFSET_DELTA_AT)
    return base_offset + max(delta, 0) + 1


def read_batch(tp: TopicPartition, base_offset: int, batch: memoryview, end: int,
               check_crc: bool) -> Iterator[ConsumerRecord]:
    """A batch's records, leniently: the readable ones as they are, every other offset as unreadable."""
    if len(batch) < DefaultRecordBase.HEADER_STRUCT.size or batch[16] < 2:
        reason = "an old or truncated record batch"
        yield from unreadable(tp, base_offset, end, bytes(batch), reason, int(time.time() * 1000))
        return
    reader = _DefaultRecordBatchPy(batch)
    if check_crc and not reader.validate_crc():
        reason = "a corrupt record batch (CRC mismatch)"
        yield from unreadable(tp, base_offset, end, bytes(batch), reason, reader.first_timestamp)
        return
    if reader.is_control_batch:
        return
    try:
        reader._maybe_uncompress()
    except Exception as exc:  # noqa: BLE001 - a missing codec or bytes the codec refuses alike
        reason = f"cannot decompress its batch ({type(exc).__name__}: {exc})"
        yield from unreadable(tp, base_offset, end, bytes(batch), reason, reader.first_timestamp)
        return
    yield from read_records(tp, reader, end)


def read_records(tp: TopicPartition, batch: _DefaultRecordBatchPy, end: int) -> Iterator[ConsumerRecord]:
    """The records of a decompressed batch; from one whose framing is broken on, the rest are unreadable."""
    buffer, pos, expected = batch._buffer, batch._pos, batch.base_offset
    while pos < len(buffer) and expected < end:
        try:
            length, start = decode_varint(buffer, pos)
            if length <= 0 or start + length > len(buffer):
                raise ValueError(f"a record of {length} bytes in {len(buffer) - start}")
            record = read_record(tp, batch, bytes(buffer[start:start + length]))
        except (ValueError, IndexError) as exc:
            reason = f"a record's framing is broken ({exc})"
            yield from unreadable(tp, expected, end, bytes(buffer[pos:]), reason, batch.first_timestamp)
            return
        yield record
        pos, expected = start + length, record.offset + 1


def read_record(tp: TopicPartition, batch: _DefaultRecordBatchPy, body: bytes) -> ConsumerRecord:
    """One record of a v2 batch (after its length), header keys kept as bytes until checked."""
    _, pos = decode_varint(body, 0)  # attributes
    timestamp_delta, pos = decode_varint(body, pos)
    offset_delta, pos = decode_varint(body, pos)
    key, pos = read_bytes(body, pos)
    value, pos = read_bytes(body, pos)
    count, pos = decode_varint(body, pos)
    headers: list[tuple[bytes, bytes | None]] = []
    for _ in range(count):
        name, pos = read_bytes(body, pos)
        content, pos = read_bytes(body, pos)
        headers.append((name or b"", content))
    timestamp = (batch.max_timestamp if batch.timestamp_type == DefaultRecordBase.LOG_APPEND_TIME
                 else batch.first_timestamp + timestamp_delta)
    offset = batch.base_offset + offset_delta
    names, problem = header_names(headers)
    record = ConsumerRecord(tp.topic, tp.partition, offset, timestamp, batch.timestamp_type, key, value,
                            None, len(key) if key is not None else -1,
                            len(value) if value is not None else -1,
                            tuple(zip(names, (content for _, content in headers), strict=True)))
    if problem:
        UNREADABLE[(tp.topic, tp.partition, offset)] = problem
    return record


def read_bytes(body: bytes, pos: int) -> tuple[bytes | None, int]:
    """A length-prefixed field: None for length -1."""
    length, pos = decode_varint(body, pos)
    if length < 0:
        return None, pos
    if pos + length > len(body):
        raise ValueError(f"a field of {length} bytes in a record of {len(body)}")
    return body[pos:pos + length], pos + length


def header_names(headers: list[tuple[bytes, bytes | None]]) -> tuple[list[str], str | None]:
    """Header names as text (undecodable bytes escaped) and, if one is not UTF-8, the reason."""
    names, problem = [], None
    for number, (name, _) in enumerate(headers, start=1):
        try:
            names.append(name.decode())
        except UnicodeDecodeError:
            names.append(name.decode(errors="backslashreplace"))
            problem = problem or (f"header {number} of {len(headers)} has a name that is not UTF-8"
                                  f" ({name[:20]!r})")
    return names, problem


def unreadable(tp: TopicPartition, first: int, end: int, raw: bytes, reason: str,
               timestamp: int) -> Iterator[ConsumerRecord]:
    """One unreadable record per offset from ``first`` to ``end``; the first keeps the raw bytes."""
    span = f"offsets {first}-{end - 1} are one unreadable batch: " if end - first > 1 else ""
    for offset in range(first, min(end, first + MOST_UNREADABLE_OFFSETS)):
        value = raw if offset == first else b""
        kept = "" if offset == first else f"; its bytes are kept at offset {first}"
        UNREADABLE[(tp.topic, tp.partition, offset)] = f"{span}{reason}{kept}"
        yield ConsumerRecord(tp.topic, tp.partition, offset, timestamp, 0, None, value, None, -1,
                             len(value), ())
