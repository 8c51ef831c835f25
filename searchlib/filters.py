"""Search filters, applied inside the vector search so ``k`` hits come back whenever they exist."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Select, String, and_, func, or_, select, type_coerce

from .errors import ConfigError


@dataclass
class Filters:
    """Conditions on catalog metadata.

    Attributes:
        folder: only images under this folder.
        after, before: capture time (EXIF, else file modification time) bounds, inclusive.
        camera: case-insensitive substring of the camera make or model.
        min_width, min_height: minimum pixel size (as displayed).
        formats: image formats (``JPEG``, ``PNG``, ...), case-insensitive.
        tags: labels stored by ``searchlib tag``; an image needs all of them.
    """

    folder: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    camera: str | None = None
    min_width: int | None = None
    min_height: int | None = None
    formats: tuple[str, ...] = ()
    tags: tuple[str, ...] = field(default_factory=tuple)

    def is_empty(self) -> bool:
        return not any([self.folder, self.after, self.before, self.camera, self.min_width,
                        self.min_height, self.formats, self.tags])


def parse_date(text: str, end: bool = False) -> datetime:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD[THH:MM[:SS]]``; ``end`` gives the last moment of a period."""
    text = text.strip()
    for fmt, unit in (("%Y", "year"), ("%Y-%m", "month"), ("%Y-%m-%d", "day")):
        try:
            start = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not end:
            return start
        if unit == "year":
            nxt = start.replace(year=start.year + 1)
        elif unit == "month":
            nxt = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
        else:
            nxt = start + timedelta(days=1)
        return nxt - timedelta(microseconds=1)
    try:
        return datetime.fromisoformat(text)
    except ValueError as e:
        raise ConfigError(f"cannot read date {text!r}; use YYYY, YYYY-MM or YYYY-MM-DD") from e


def capture_time(image_row):
    """SQL expression: EXIF capture time, else the file's modification time (both local-naive text)."""
    return type_coerce(func.coalesce(image_row.taken_at,
                                     func.datetime(image_row.mtime_ns / 1_000_000_000, "unixepoch", "localtime")),
                       String)


def apply(stmt: Select, filters: Filters) -> Select:
    """Add the filters' conditions to a select over ``ImageRow``."""
    from .catalog import ImageRow, TagRow

    conds = []
    if filters.folder:
        root = os.path.abspath(os.path.expanduser(filters.folder)).rstrip(os.sep) + os.sep
        conds.append(func.substr(ImageRow.path, 1, len(root)) == root)
    when = capture_time(ImageRow)
    if filters.after:
        conds.append(when >= filters.after.strftime("%Y-%m-%d %H:%M:%S"))
    if filters.before:
        conds.append(when <= filters.before.strftime("%Y-%m-%d %H:%M:%S.999999"))
    if filters.camera:
        needle = f"%{filters.camera.lower()}%"
        conds.append(or_(func.lower(ImageRow.camera_make).like(needle),
                         func.lower(ImageRow.camera_model).like(needle),
                         func.lower(func.coalesce(ImageRow.camera_make, "") + " "
                                    + func.coalesce(ImageRow.camera_model, "")).like(needle)))
    if filters.min_width:
        conds.append(ImageRow.width >= filters.min_width)
    if filters.min_height:
        conds.append(ImageRow.height >= filters.min_height)
    if filters.formats:
        wanted = [f.upper().replace("JPG", "JPEG") for f in filters.formats]
        conds.append(func.upper(ImageRow.format).in_(wanted))
    for tag in filters.tags:
        conds.append(ImageRow.id.in_(select(TagRow.image_id).where(TagRow.label == tag.lower())))
    return stmt.where(and_(*conds)) if conds else stmt
