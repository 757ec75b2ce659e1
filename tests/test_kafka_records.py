"""Reading fetched record batches that aiokafka's decoder cannot read: each unreadable offset is named."""

from collections.abc import Sequence

import pytest
from aiokafka.consumer import fetcher
from aiokafka.record.default_records import DefaultRecordBase, DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.record.util import calc_crc32c
from aiokafka.structs import TopicPartition

from restaurant_app.kafka_records import UNREADABLE, KeptRecords, SalvagingPartitionRecords, forget

TP = TopicPartition("orders", 3)
PLACEHOLDER = "name-to-replace"
GZIP = DefaultRecordBase.CODEC_GZIP
AIOKAFKA_RECORDS = SalvagingPartitionRecords.__bases__[0]
"""aiokafka's own class (``install`` may have replaced it in the fetcher module already)."""


def batch(base_offset: int, values: Sequence[bytes], codec: int = 0,
          headers: Sequence[list[tuple[str, bytes]]] = ()) -> bytearray:
    """A v2 record batch of ``values`` at ``base_offset``, with each record's ``headers``."""
    builder = DefaultRecordBatchBuilder(2, codec, 0, -1, -1, -1, 10_000_000)
    for delta, value in enumerate(values):
        record_headers = headers[delta] if delta < len(headers) else []
        builder.append(delta, 1_700_000_000_000 + delta, None, value, record_headers)
    built = bytearray(builder.build())
    built[0:8] = base_offset.to_bytes(8, "big")
    return built


def resealed(data: bytearray) -> bytearray:
    """The batch with its CRC computed again, as a producer would have sent it."""
    crc = calc_crc32c(bytes(data[DefaultRecordBase.ATTRIBUTES_OFFSET:]))
    data[DefaultRecordBase.CRC_OFFSET:DefaultRecordBase.CRC_OFFSET + 4] = crc.to_bytes(4, "big")
    return data


def with_header_name(data: bytearray, name: bytes) -> bytearray:
    """The batch with the placeholder header name replaced by ``name`` (same length)."""
    assert len(name) == len(PLACEHOLDER)
    return resealed(bytearray(bytes(data).replace(PLACEHOLDER.encode(), name)))


def partition_records(cls: type, data: bytes, fetch_offset: int = 0) -> fetcher.PartitionRecords:
    records = KeptRecords(data) if cls is SalvagingPartitionRecords else MemoryRecords(data)
    return cls(TP, records, None, fetch_offset, None, None, True, fetcher.READ_UNCOMMITTED)


def read(data: bytes, fetch_offset: int = 0) -> tuple[list, int]:
    """Records read leniently, and the position the partition moves to."""
    records = partition_records(SalvagingPartitionRecords, data, fetch_offset)
    return list(records), records.next_fetch_offset


def reasons(records: list) -> dict[int, str]:
    return {r.offset: UNREADABLE[(r.topic, r.partition, r.offset)] for r in records
            if (r.topic, r.partition, r.offset) in UNREADABLE}


@pytest.fixture(autouse=True)
def no_reasons_left():
    UNREADABLE.clear()
    yield
    UNREADABLE.clear()


def test_a_header_name_that_is_not_utf8_makes_only_its_record_unreadable():
    headers = [[], [(PLACEHOLDER, b"v"), ("ok", b"\xff\xfe not utf-8 is fine in a value")], []]
    data = with_header_name(batch(0, [b"first", b"second", b"third"], headers=headers), b"\xff" * 15)
    with pytest.raises(UnicodeDecodeError):
        list(partition_records(AIOKAFKA_RECORDS, bytes(data)))

    records, position = read(bytes(data))

    assert [(r.offset, r.value) for r in records] == [(0, b"first"), (1, b"second"), (2, b"third")]
    assert position == 3
    [(offset, reason)] = reasons(records).items()
    assert offset == 1 and reason.startswith("header 1 of 2 has a name that is not UTF-8")
    assert records[1].headers[1] == ("ok", b"\xff\xfe not utf-8 is fine in a value")


def test_a_batch_in_a_codec_nobody_knows_is_unreadable_at_every_offset_and_the_next_batch_is_read():
    unknown = batch(0, [b"a", b"b", b"c"], codec=GZIP)
    unknown[DefaultRecordBase.ATTRIBUTES_OFFSET + 1] |= 0x07  # codec 7 does not exist
    good = batch(3, [b"d"])
    data = bytes(resealed(unknown) + good)

    records, position = read(data)

    assert [r.offset for r in records] == [0, 1, 2, 3]
    assert records[0].value == bytes(unknown) and records[1].value == records[2].value == b""
    found = reasons(records)
    assert sorted(found) == [0, 1, 2]
    assert "offsets 0-2 are one unreadable batch: cannot decompress" in found[0]
    assert found[2].endswith("its bytes are kept at offset 0")
    assert records[3].value == b"d" and position == 4


def test_a_corrupt_batch_is_unreadable_and_the_records_before_it_are_read_once():
    first = batch(0, [b"a", b"b"])
    corrupt = batch(2, [b"c", b"d"])
    corrupt[-1] ^= 0xFF  # no new CRC: the batch is corrupt
    records, position = read(bytes(first + corrupt), fetch_offset=1)

    assert [(r.offset, r.value) for r in records] == [(1, b"b"), (2, bytes(corrupt)), (3, b"")]
    assert sorted(reasons(records)) == [2, 3]
    assert "CRC mismatch" in reasons(records)[2]
    assert position == 4


def test_forget_drops_the_reasons_of_acknowledged_records():
    data = with_header_name(batch(0, [b"x"], headers=[[(PLACEHOLDER, b"")]]), b"\xc3" * 15)
    records, _ = read(bytes(data))
    assert reasons(records)
    forget([(TP.topic, TP.partition, 0)])
    assert UNREADABLE == {}
