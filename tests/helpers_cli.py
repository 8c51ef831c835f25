"""Shared by the feature tests: a CLI runner, the installed command, a PNG that lies about its size."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from searchlib.cli.main import main

EXE = str(Path(sys.executable).with_name("searchlib"))


def cli(*args, index=None):
    runner = CliRunner()
    return runner.invoke(main, (["--index", str(index)] if index else []) + [str(a) for a in args])


def png_claiming(width: int, height: int, bit_depth: int = 8) -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0 if bit_depth == 16 else 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


