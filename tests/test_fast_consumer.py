"""The fast consumer's accounting of the bytes it holds."""

from faust.types import Message

from restaurant_app.fast_consumer import MessageBatch, message_bytes


def message(value: bytes, key: bytes | None = None, headers=None) -> Message:
    return Message("orders", 0, 7, 0.0, 0, headers, key, value, None)


def test_a_message_holds_its_key_value_and_headers_and_a_batch_what_it_was_given():
    plain = message(b"12345")
    keyed = message(b"12345", key=b"store-1", headers=[("trace", b"abc"), ("empty", None)])
    assert message_bytes(plain) == 5
    assert message_bytes(keyed) == 5 + 7 + len("trace") + 3 + len("empty")
    assert message_bytes(message(b"", headers=[])) == 0
    assert message_bytes(MessageBatch([plain, keyed], 42)) == 42
