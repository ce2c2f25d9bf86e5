"""Messages between a worker process and the process that owns the store: length-prefixed pickles
over the worker's stdout pipe. Both ends are the lab's own processes."""

from __future__ import annotations

import pickle
import struct
from typing import Any, BinaryIO

_HEADER = struct.Struct("<I")


def send(stream: BinaryIO, kind: str, **payload: Any) -> None:
    data = pickle.dumps((kind, payload), protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def receive(stream: BinaryIO) -> tuple[str, dict] | None:
    """The next message, or None at the end of the stream (the worker exited or died)."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        return None
    return pickle.loads(data)
