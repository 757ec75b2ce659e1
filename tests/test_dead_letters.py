"""A dead letter fits the producer's limit whatever the rejected message's key, headers and value weigh."""

import asyncio

import pytest

from restaurant_app import dead_letters as dead_letters_module
from restaurant_app.dead_letters import ERROR_HEADER, DeadLetterPublisher, dead_letter
from restaurant_app.order_sink import Rejection, Source

LIMIT = 1_000_000


def rejection(value: bytes = b"{broken", key: bytes | None = b"k",
              headers: tuple[tuple[str, bytes], ...] = ()) -> Rejection:
    return Rejection(Source("orders", 2, 41, value, key, headers), "message is not valid JSON")


def errors_of(headers: list) -> dict[str, bytes]:
    return {name: value for name, value in headers if name.startswith(ERROR_HEADER)}


def test_a_message_that_fits_goes_whole_with_its_headers_first():
    letter = dead_letter(rejection(headers=(("origin", b"pos-1"),)), LIMIT)
    assert (letter.key, letter.value) == (b"k", b"{broken")
    assert letter.headers[0] == ("origin", b"pos-1")
    assert errors_of(letter.headers)[ERROR_HEADER + "offset"] == b"41"


def test_a_990_kb_key_is_kept_while_it_fits_and_cut_when_it_does_not():
    assert dead_letter(rejection(key=b"k" * 990_000), LIMIT).key == b"k" * 990_000
    value = b"{" + b"x" * 40_000
    letter = dead_letter(rejection(value, key=b"k" * 990_000), LIMIT)
    headers = dict(letter.headers)
    assert letter.size() <= LIMIT and letter.value == value
    assert letter.key != b"k" * 990_000 and (b"k" * 990_000).startswith(letter.key)
    assert headers["key-truncated-from-bytes"] == b"990000"
    assert ERROR_HEADER + "exception.message" in headers


def test_600_kb_of_headers_are_dropped_past_their_share_and_counted():
    own = tuple((f"h{n}", bytes([n]) * 100_000) for n in range(6))
    value = b"{" + b"x" * 420_000
    letter = dead_letter(rejection(value, headers=(("small", b"kept"), *own)), LIMIT)
    headers = dict(letter.headers)
    assert letter.size() <= LIMIT and letter.value == value
    assert headers["small"] == b"kept" and headers["dropped-headers"] == b"6"
    assert not any(name in headers for name, _ in own)


@pytest.mark.parametrize("key_size, header_size, value_size", [
    (0, 0, 1_040_000), (990_000, 0, 990_000), (500_000, 500_000, 500_000), (30, 2_000_000, 1_000_000),
])
def test_every_mix_of_key_headers_and_value_fits(key_size: int, header_size: int, value_size: int):
    headers = tuple((f"h{n}", b"v" * 50_000) for n in range(header_size // 50_000))
    message = rejection(b"x" * value_size, b"k" * key_size, headers)
    letter = dead_letter(message, LIMIT)
    assert letter.size() <= LIMIT
    assert len(errors_of(letter.headers)) == 6
    if len(letter.value) < value_size:
        assert dict(letter.headers)["truncated-from-bytes"] == str(value_size).encode()


class RefusingTopic:
    """A dead-letter topic that refuses the first ``refusals`` sends."""

    def __init__(self, refusals: int) -> None:
        self.refusals, self.sent = refusals, []

    def get_topic_name(self) -> str:
        return "dead"

    async def send(self, key: bytes | None, value: bytes, headers: list) -> asyncio.Future:
        delivery = asyncio.get_running_loop().create_future()
        if self.refusals:
            self.refusals -= 1
            delivery.set_exception(RuntimeError("record too large"))
        else:
            self.sent.append(value)
            delivery.set_result(None)
        return delivery


async def test_a_topic_that_refuses_tells_what_holds_the_batch_and_since_when(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(dead_letters_module, "FIRST_RETRY_SECONDS", 0.01)
    topic, told = RefusingTopic(refusals=2), []
    publisher = DeadLetterPublisher(topic, LIMIT, lambda error, since: told.append((error, since)))
    await publisher.publish([rejection()])
    assert topic.sent == [b"{broken"]
    assert [error for error, _ in told] == ["the dead-letter topic 'dead' refuses 1 rejection(s):"
                                            " RuntimeError: record too large"] * 2
    assert told[0][1] == told[1][1]
