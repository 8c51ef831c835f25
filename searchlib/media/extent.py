"""Whether a RAW file is cut short: the data its own structure declares lies past its end.

LibRaw opens a truncated file happily when its header survived, and the embedded preview usually
sits near the start, so a file cut in the middle of its sensor data would be indexed from its
preview and never reported. Unpacking the sensor data would notice, but costs most of what reading
the preview saves. This reads the structure instead (a few kilobytes): the TIFF directories of
DNG, CR2, NEF, ARW, PEF, SRW, ORF and RW2 (every strip, tile and embedded JPEG, through SubIFDs),
the top-level boxes of CR3, the header of RAF. A format it does not know is not judged.
"""

from __future__ import annotations

import struct

_TIFF_HEADS = {b"II*\x00": "<", b"MM\x00*": ">", b"IIRO": "<", b"IIRS": "<", b"MMOR": ">", b"IIU\x00": "<"}
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
# (offsets tag, byte counts tag): strips, tiles, the JPEG of a preview.
_EXTENTS = ((273, 279), (324, 325), (513, 514))
_SUB_IFDS = (330, 34665)  # SubIFDs (DNG sensor data, NEF previews), the EXIF IFD
_MAX_IFDS = 64  # a loop of IFD pointers ends here


def truncated(data: bytes) -> str | None:
    """Why ``data`` is cut short (what lies past its end), or None when it is whole or unknown."""
    head = data[:4]
    if head in _TIFF_HEADS:
        return _tiff(data, _TIFF_HEADS[head])
    if data[4:12] == b"ftypcrx ":
        return _boxes(data)
    if data.startswith(b"FUJIFILMCCD-RAW"):
        return _raf(data)
    return None


def _tiff(data: bytes, order: str) -> str | None:
    size = len(data)
    if size < 8:
        return "the TIFF header is cut short"
    todo = [struct.unpack(order + "I", data[4:8])[0]]
    seen: set[int] = set()
    while todo and len(seen) < _MAX_IFDS:
        offset = todo.pop()
        if offset == 0 or offset in seen:
            continue
        seen.add(offset)
        if offset + 2 > size:
            return "a directory lies past the end of the file"
        count = struct.unpack(order + "H", data[offset:offset + 2])[0]
        end = offset + 2 + 12 * count
        if end + 4 > size:
            return "a directory lies past the end of the file"
        tags = {}
        for i in range(count):
            entry = data[offset + 2 + 12 * i:offset + 14 + 12 * i]
            tag, kind, n = struct.unpack(order + "HHI", entry[:8])
            tags[tag] = (kind, n, entry[8:12])
        for tag in _SUB_IFDS:
            if tag in tags:
                todo.extend(_values(data, order, *tags[tag]) or [])
        for where, length in _EXTENTS:
            if where in tags and length in tags:
                starts = _values(data, order, *tags[where])
                lengths = _values(data, order, *tags[length])
                if starts is None or lengths is None:
                    return "a directory's values lie past the end of the file"
                if any(s + n > size for s, n in zip(starts, lengths)):
                    return f"image data ends at byte {max(s + n for s, n in zip(starts, lengths))}, the file at {size}"
        todo.append(struct.unpack(order + "I", data[end:end + 4])[0])
    return None


def _values(data: bytes, order: str, kind: int, count: int, field: bytes) -> list[int] | None:
    """The integer values of a directory entry (None when they lie past the end of the file)."""
    width = _TYPE_SIZES.get(kind, 0)
    code = {1: "B", 3: "H", 4: "I", 13: "I"}.get(kind)
    if code is None or count > 1_000_000:
        return []
    if width * count <= 4:
        raw = field[:width * count]
    else:
        at = struct.unpack(order + "I", field)[0]
        if at + width * count > len(data):
            return None
        raw = data[at:at + width * count]
    return list(struct.unpack(f"{order}{count}{code}", raw))


def _boxes(data: bytes) -> str | None:
    pos, size = 0, len(data)
    while pos + 8 <= size:
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        if length == 1 and pos + 16 <= size:
            length = struct.unpack(">Q", data[pos + 8:pos + 16])[0]
        elif length == 0:  # the last box runs to the end of the file
            return None
        if length < 8:
            return "a box has an impossible size"
        if pos + length > size:
            return f"box {data[pos + 4:pos + 8]!r} ends at byte {pos + length}, the file at {size}"
        pos += length
    return None


def _raf(data: bytes) -> str | None:
    if len(data) < 108:
        return "the RAF header is cut short"
    # Big-endian (offset, length) pairs at 84: the JPEG preview, the metadata, the sensor data.
    for at in (84, 92, 100):
        start, length = struct.unpack(">II", data[at:at + 8])
        if start + length > len(data):
            return f"data ends at byte {start + length}, the file at {len(data)}"
    return None
