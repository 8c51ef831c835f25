"""What a JPEG's header says about how it can be decoded — without decoding it, and without torch.

Decode workers use this to decide whether a file's bytes can go to the batched device decoder
(nvJPEG through torchvision on CUDA) or must be decoded on the CPU: progressive and arithmetic-coded
files, 12-bit files, CMYK/YCCK and RGB-coded files stay on the CPU, where Pillow handles them all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Start-of-frame markers (ITU T.81, table B.1); 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_BASELINE = {0xC0, 0xC1}  # Huffman-coded, sequential DCT
_STANDALONE = {0x01, 0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD6, 0xD7}  # TEM and RSTn carry no length


@dataclass(frozen=True)
class JpegInfo:
    """The frame header of a JPEG file."""

    sof: int  # the start-of-frame marker, e.g. 0xC0 baseline, 0xC2 progressive
    precision: int  # bits per sample
    width: int
    height: int
    components: int
    adobe_transform: int | None  # Adobe APP14 colour transform flag, if present
    component_ids: tuple[int, ...]
    complete: bool = True  # an end-of-image marker follows the frame header (not truncated)

    @property
    def progressive(self) -> bool:
        return self.sof in (0xC2, 0xC6, 0xCA, 0xCE)

    @property
    def device_decodable(self) -> bool:
        """Whether the batched device decoder handles this file exactly like Pillow would.

        Only complete 8-bit sequential Huffman JPEGs in grayscale or YCbCr qualify: progressive
        and arithmetic-coded files, CMYK/YCCK and RGB-coded (no colour transform) files go to the
        CPU, and so do truncated files, so that Pillow reports them the same way on every path
        (a GPU decoder might fill in the missing part instead).
        """
        if not self.complete or self.sof not in _BASELINE or self.precision != 8 or self.width <= 0 or self.height <= 0:
            return False
        if self.components == 1:
            return True
        if self.components != 3:
            return False
        if self.adobe_transform == 0:  # Adobe says: stored as RGB, not YCbCr
            return False
        # Without an Adobe marker, libjpeg treats component ids 'R','G','B' as RGB.
        return self.component_ids != (0x52, 0x47, 0x42)


def jpeg_info(data: bytes | memoryview) -> JpegInfo | None:
    """Parse the markers up to the frame header; None when ``data`` is no (well-formed) JPEG."""
    if len(data) < 4 or data[0] != 0xFF or data[1] != 0xD8:
        return None
    pos, end = 2, len(data)
    adobe: int | None = None
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9, 0xDA):  # SOI again, EOI or scan data before any frame header
            return None
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2 or pos + 2 + length > end:
            return None
        body = pos + 4
        if marker == 0xEE and length >= 14 and bytes(data[body:body + 5]) == b"Adobe":
            adobe = data[body + 11]
        elif marker in _SOF:
            if length < 8:
                return None
            precision, height, width, ncomp = struct.unpack_from(">BHHB", data, body)
            if length < 8 + 3 * ncomp:
                return None
            ids = tuple(data[body + 6 + 3 * i] for i in range(ncomp))
            # rfind scans from the end, where the EOI of a complete file is: cheap.
            complete = bytes(data).rfind(b"\xff\xd9", pos) != -1
            return JpegInfo(marker, precision, width, height, ncomp, adobe, ids, complete)
        pos += 2 + length
    return None
