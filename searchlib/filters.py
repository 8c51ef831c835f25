"""Search filters on catalog metadata, applied inside the vector search so ``k`` hits come back
whenever they exist. This module only describes them; the catalog turns them into SQL."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import ConfigError

#: The kinds of item a search can be limited to (``Filters.media``).
MEDIA_KINDS = ("image", "video")


@dataclass(frozen=True)
class Filters:
    """Conditions on catalog metadata.

    Attributes:
        folder: only images under this folder.
        after, before: capture time (EXIF, else file modification time) bounds, inclusive.
        camera: case-insensitive substring of the camera make or model.
        min_width, min_height: minimum pixel size (as displayed).
        formats: image formats (``JPEG``, ``PNG``, ...), case-insensitive.
        tags: labels stored by ``searchlib tag``; an image needs all of them.
        text: words read in the image (``index --read-text``); an image needs all of them, each
            as a case- and accent-insensitive substring.
        media: ``image`` or ``video``: only items of that kind (a video's items are its segments).
    """

    folder: str | None = None
    after: datetime | None = None
    before: datetime | None = None
    camera: str | None = None
    min_width: int | None = None
    min_height: int | None = None
    formats: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    text: str | None = None
    media: str | None = None

    def __post_init__(self) -> None:
        # Lists are accepted for convenience; stored as tuples so Filters stays hashable.
        object.__setattr__(self, "formats", tuple(self.formats or ()))
        object.__setattr__(self, "tags", tuple(self.tags or ()))
        if self.media is not None and self.media not in MEDIA_KINDS:
            raise ConfigError(f"unknown media {self.media!r}; use one of: {', '.join(MEDIA_KINDS)}")
        if self.after and self.before and self.after > self.before:
            raise ConfigError(f"the date range is empty: after {self.after:%Y-%m-%d} is later than before "
                              f"{self.before:%Y-%m-%d}")

    @classmethod
    def from_strings(cls, folder: str | None = None, after: str | None = None, before: str | None = None,
                     camera: str | None = None, min_width: int | None = None, min_height: int | None = None,
                     formats: Sequence[str] = (), tags: Sequence[str] = (), text: str | None = None,
                     media: str | None = None) -> Filters:
        """Filters as a command line or a URL gives them: dates as text (``after`` from the start of
        its period, ``before`` to its end, see :func:`parse_date`), empty strings meaning "not set".

        Raises:
            ConfigError: a date that cannot be read, or an empty date range.
        """
        return cls(folder=folder or None, after=parse_date(after) if after else None,
                   before=parse_date(before, end=True) if before else None, camera=camera or None,
                   min_width=min_width, min_height=min_height, formats=tuple(formats or ()), tags=tuple(tags or ()),
                   text=(text or "").strip() or None, media=(media or "").strip().lower() or None)

    def is_empty(self) -> bool:
        return not any([self.folder, self.after, self.before, self.camera, self.min_width,
                        self.min_height, self.formats, self.tags, self.text, self.media])


def parse_date(text: str, end: bool = False) -> datetime:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD[THH:MM[:SS]]``; ``end`` gives the last moment of a period.

    Raises:
        ConfigError: not a date in one of those forms.
    """
    text = (text or "").strip()
    for fmt, unit in (("%Y", "year"), ("%Y-%m", "month"), ("%Y-%m-%d", "day")):
        try:
            start = datetime.strptime(text, fmt)
        except ValueError:
            continue
        if not end:
            return start
        try:
            if unit == "year":
                nxt = start.replace(year=start.year + 1)
            elif unit == "month":
                nxt = start.replace(year=start.year + (start.month == 12), month=start.month % 12 + 1)
            else:
                nxt = start + timedelta(days=1)
        except (ValueError, OverflowError):  # the end of year 9999
            return datetime.max
        return nxt - timedelta(microseconds=1)
    try:
        when = datetime.fromisoformat(text)
        # Stored dates are naive local time (as EXIF's are): compare like with like.
        return when.astimezone().replace(tzinfo=None) if when.tzinfo else when
    except ValueError as e:
        raise ConfigError(f"cannot read date {text!r}; use YYYY, YYYY-MM or YYYY-MM-DD") from e
