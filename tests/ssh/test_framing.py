"""deployer/ssh/framing.py: markers and lines found whatever the read boundaries."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployer.ssh.framing import DONE, IN, MAX_CAPTURE, MAX_LINE, PRE, Stream, end_fields

TOKEN = b"0123456789abcdef01234567"
START = b"\x1e" + TOKEN + b" S"
END = b"\x1e" + TOKEN + b" E"


def _stream(capture: bool = True, leftover: bytes = b"") -> tuple[Stream, list[str]]:
    lines: list[str] = []
    return Stream("stdout", TOKEN, lambda _s, line: lines.append(line), capture,
                  leftover), lines


def _feed_in_pieces(stream: Stream, data: bytes, cuts: list[int]) -> None:
    points = sorted({c % (len(data) + 1) for c in cuts})
    last = 0
    for p in points + [len(data)]:
        stream.feed(data[last:p])
        last = p


# Output lines a step may print: anything but a newline, including \x1e, parts of the
# marker, and text that looks like a marker with another token.
_line = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"\x1e", START[:5], END[:-1], b"\x1e" + b"f" * 24 + b" E 3", b"\r"]),
)


@settings(max_examples=300, deadline=None)
@given(noise=st.binary(max_size=60).map(lambda b: b.replace(b"\x1e", b"")),
       body=st.lists(_line, max_size=8), code=st.integers(0, 255),
       cuts=st.lists(st.integers(0, 10_000), max_size=12))
def test_markers_split_across_arbitrary_reads(noise: bytes, body: list[bytes], code: int,
                                              cuts: list[int]) -> None:
    payload = b"".join(line + b"\n" for line in body)
    data = noise + START + b" 4242 917 boot-id\n" + payload + END + f" {code}\n".encode()
    stream, lines = _stream()
    _feed_in_pieces(stream, data, cuts)
    assert stream.phase == DONE
    assert stream.start_value == "4242 917 boot-id"
    assert stream.value == str(code)
    expected = [line.decode("utf-8", "replace") for line in body]
    assert lines == [t[:-1] if t.endswith("\r") else t for t in expected]
    assert bytes(stream.capture or b"") == payload
    assert bytes(stream.stray) == noise


@given(cuts=st.lists(st.integers(0, 200), max_size=10), after=st.binary(max_size=30))
def test_bytes_after_the_end_marker_stay_for_the_next_step(cuts: list[int],
                                                           after: bytes) -> None:
    data = START + b" 1 - -\n" + b"out\n" + END + b" 0\n" + after
    stream, lines = _stream()
    _feed_in_pieces(stream, data, cuts)
    assert stream.phase == DONE and lines == ["out"]
    assert bytes(stream.buf) == after
    # The next step on the same agent starts from those bytes.
    nxt, more = _stream(leftover=bytes(stream.buf))
    nxt.feed(START + b" 2 - -\nsecond\n" + END + b" 1\n")
    assert more == ["second"] and nxt.value == "1"


def test_phases_and_unterminated_last_line() -> None:
    stream, lines = _stream()
    stream.feed(b"motd from rc files\n")
    assert stream.phase == PRE and lines == []
    stream.feed(START + b" 7 - -\npartial")
    assert stream.phase == IN and lines == []
    stream.feed(END + b" 0\n")
    assert stream.phase == DONE and lines == ["partial"]


def test_a_lost_step_delivers_what_arrived() -> None:
    stream, lines = _stream()
    stream.feed(START + b" 7 - -\nfirst\nsecond half" + END[:4])
    stream.finish_partial()
    assert lines == ["first", "second half" + END[:4].decode()]


def test_long_lines_come_in_pieces_and_capture_is_bounded() -> None:
    stream, lines = _stream()
    stream.feed(START + b" 7 - -\n")
    stream.feed(b"x" * (MAX_LINE * 2 + 10))
    assert [len(line) for line in lines] == [MAX_LINE, MAX_LINE]
    stream.feed(b"y" * MAX_CAPTURE + b"\n" + END + b" 0\n")
    assert stream.truncated and len(stream.capture or b"") == MAX_CAPTURE


def test_stderr_keeps_no_capture() -> None:
    stream, lines = _stream(capture=False)
    stream.feed(START + b"\nerr\n" + END + b"\n")
    assert stream.capture is None and lines == ["err"] and stream.phase == DONE


@pytest.mark.parametrize("value, expected", [
    ("0 1796420788.781320 1796420790.031320", (0, 1.25)),
    ("3 1796420788,500000 1796420789,000000", (3, 0.5)),  # a locale's decimal comma
    ("0", (0, None)),  # bash < 5 has no EPOCHREALTIME: no host time, the code still counts
    ("1  ", (1, None)),
    ("0 x y", (0, None)),
    ("oops 1 2", (-1, None)),
    ("", (-1, None)),
    ("0 5.0 4.0", (0, 0.0)),  # a clock stepped back: never a negative duration
])
def test_end_fields_give_the_exit_code_and_the_host_time(value, expected) -> None:
    code, seconds = end_fields(value)
    assert code == expected[0]
    assert seconds == (pytest.approx(expected[1]) if expected[1] is not None else None)
