"""Incremental Server-Sent Events parsing (the WHATWG event-stream format).

Bytes go in as they arrive; complete events come out. Several events may be
in one read, and an event split across reads waits for its blank line. Lines
may end in LF, CRLF or CR, and a CR at the end of a read waits to see whether
an LF follows. Bytes are decoded incrementally, so a multi-byte character
split across reads is not mangled. Malformed input never raises: invalid
UTF-8 becomes U+FFFD and unknown fields are ignored, as the format requires.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str = "message"
    id: str | None = None


class SSEParser:
    """Feed bytes with :meth:`feed`; call :meth:`close` at end of stream."""

    __slots__ = ("_buffer", "_data", "_decoder", "_event", "_has_data", "_id", "_pending_cr")

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._has_data = False
        self._pending_cr = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        return self._feed_text(self._decoder.decode(chunk))

    def feed_data(self, chunk: bytes) -> list[str]:
        """The data of each event that ``chunk`` completes: the same events as :meth:`feed`.

        Whole ``data: ...`` events (what vLLM streams) are split off at once, with nothing
        but a partial line buffered from before; the rest of the read, and any read of
        another form, goes through the line-by-line parser."""
        text = self._decoder.decode(chunk)
        if "\r" in text or self._pending_cr or self._has_data or self._event:
            return [event.data for event in self._feed_text(text)]
        text, self._buffer = self._buffer + text, ""  # the buffer holds at most a partial line
        end = text.rfind("\n\n")
        blocks = text[:end].split("\n\n") if end >= 0 else []
        if not blocks or not all(block.startswith("data: ") and "\n" not in block for block in blocks):
            return [event.data for event in self._feed_text(text)]
        return [block[6:] for block in blocks] + [event.data for event in self._feed_text(text[end + 2 :])]

    def close(self) -> list[SSEEvent]:
        """End of stream. Per the format, an event without its final blank line is dropped."""
        events = self._feed_text(self._decoder.decode(b"", final=True))
        self._buffer, self._pending_cr = "", False
        self._data, self._event, self._id, self._has_data = [], "", None, False
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not text:
            return []
        if self._pending_cr:
            self._pending_cr = False
            if text.startswith("\n"):
                text = text[1:]
        # A CR at the end may be the first half of a CRLF split across reads: it ends
        # a line now, and an LF at the start of the next read is then skipped.
        trailing_cr = text.endswith("\r")
        if trailing_cr:
            text = text[:-1]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        buffer = self._buffer + text + ("\n" if trailing_cr else "")
        self._pending_cr = trailing_cr
        events: list[SSEEvent] = []
        start = 0
        while True:
            end = buffer.find("\n", start)
            if end < 0:
                break
            self._line(buffer[start:end], events)
            start = end + 1
        self._buffer = buffer[start:]
        return events

    @property
    def has_partial(self) -> bool:
        """True if an incomplete event is buffered (a stream cut here lost data)."""
        return bool(self._buffer) or self._has_data

    def _line(self, line: str, events: list[SSEEvent]) -> None:
        if not line:
            if self._has_data:
                events.append(SSEEvent("\n".join(self._data), self._event or "message", self._id))
            self._data, self._event, self._has_data = [], "", False
            return
        if line[0] == ":":
            return  # comment / keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._has_data = True
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = value
        # "retry" and unknown fields are ignored.


def parse_all(payload: bytes) -> list[SSEEvent]:
    """Parse a whole stream at once (tests and small tools)."""
    parser = SSEParser()
    return parser.feed(payload) + parser.close()
