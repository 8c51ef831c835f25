"""What the routers share: the index (opened on first use), the query parameter types, and the one
dependency that turns the eight filter parameters into :class:`searchlib.Filters`."""

from __future__ import annotations

import os
import threading
from typing import Annotated, Literal

from fastapi import Depends, Path, Query, Request
from pydantic import StringConstraints

from ..filters import MAX_FOLDER, MAX_PIXELS_SIDE, MAX_TEXT, MAX_VALUES, Filters
from ..index import MAX_K, Index, open_index

API = "/api/v1"


class IndexHolder:
    """Opens the index on first use, and again later if it did not exist yet (so a server started
    before the first ``searchlib index`` shows the photos once they are there)."""

    def __init__(self, directory: str | os.PathLike, catalog: str | None, device: str):
        self.directory, self.catalog, self.device = directory, catalog, device
        self._index: Index | None = None
        self._lock = threading.Lock()

    def get(self) -> Index:
        """The open index.

        Raises:
            IndexNotFoundError: there is no index yet.
        """
        if self._index is None:
            with self._lock:
                if self._index is None:
                    index = open_index(self.directory, device=self.device, catalog=self.catalog)
                    index.batch_queries()  # concurrent queries share encoder calls and vector scans
                    self._index = index
        return self._index

    def close(self) -> None:
        """Close the index if it was opened."""
        if self._index is not None:
            self._index.close()


def holder_of(request: Request) -> IndexHolder:
    """The app's :class:`IndexHolder` (a dependency)."""
    return request.app.state.holder


def index_of(request: Request) -> Index:
    """The app's open index (a dependency; a missing index is a 404 that says how to make one)."""
    return holder_of(request).get()


def max_upload_of(request: Request) -> int:
    """The largest upload the app accepts, in bytes (a dependency)."""
    return request.app.state.max_upload


#: LAT,LON in degrees as parse_position reads them, in range (-90..90, -180..180).
_LAT = r"-?(90(\.0+)?|[1-8]?[0-9](\.[0-9]+)?)"
_LON = r"-?(180(\.0+)?|(1[0-7][0-9]|[1-9]?[0-9])(\.[0-9]+)?)"
NEAR_PATTERN = f"^ *{_LAT} *, *{_LON} *$"
#: No two places on Earth are further apart along its surface (km).
EARTH_KM = 20038


# Shared query parameters (module level: FastAPI resolves the string annotations here).
K = Annotated[int, Query(ge=1, le=MAX_K, description="How many hits")]
Offset = Annotated[int, Query(ge=0, le=MAX_K - 1, description="Skip this many (paging)")]
Folder = Annotated[str | None, Query(alias="in", max_length=MAX_FOLDER, description="Only images under this folder")]
#: Ids are 64-bit catalog keys: a larger number is refused as malformed rather than overflowing.
MAX_ID = (1 << 63) - 1
ImageId = Annotated[int, Path(ge=0, le=MAX_ID, description="An image's catalog id")]
#: The forms parse_date reads, calendar included (a valid-looking 2023-02-30 must not pass the
#: schema and then be refused): any year but 0000; days by month; 02-29 in leap years only.
_YEAR = "(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"
_LEAP = "([0-9]{2}(0[48]|[2468][048]|[13579][26])|(0[48]|[2468][048]|[13579][26])00)"
_MONTH_DAY = "((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
DATE_PATTERN = f"^({_YEAR}(-(0[1-9]|1[0-2]))?|{_YEAR}-{_MONTH_DAY}|{_LEAP}-02-29)$"
Date = Annotated[str | None, Query(pattern=DATE_PATTERN, description="YYYY, YYYY-MM or YYYY-MM-DD")]
Multi = Annotated[list[str] | None, Query()]
#: The library's bound on pixel sizes (within every database's integers).
Pixels = Annotated[int | None, Query(ge=1, le=MAX_PIXELS_SIDE)]
Short = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
#: A similarity bound: finite (NaN and infinities are refused as malformed).
Score = Annotated[float | None, Query(ge=-1e6, le=1e6, allow_inf_nan=False)]
Relative = Annotated[float | None, Query(ge=0, le=1e6, allow_inf_nan=False)]


def search_filters(folder: Folder = None, after: Date = None, before: Date = None,
                   camera: Annotated[str | None, Query(max_length=MAX_TEXT,
                                                       description="Camera make or model contains this")] = None,
                   min_width: Pixels = None, min_height: Pixels = None,
                   format: Annotated[list[Short] | None, Query(max_length=MAX_VALUES,
                                                               description="File formats (repeatable)")] = None,
                   tag: Annotated[list[Short] | None, Query(max_length=MAX_VALUES,
                                                            description="Tags (repeatable)")] = None,
                   text: Annotated[str | None, Query(max_length=MAX_TEXT, description="Words read in the image "
                                                     "(index --read-text): every word, as a case- and accent-blind "
                                                     "substring")] = None,
                   place: Annotated[list[Short] | None, Query(max_length=MAX_VALUES, description="Taken in this "
                                                              "city, region, country or country code (repeatable)")
                                    ] = None,
                   near: Annotated[str | None, Query(pattern=NEAR_PATTERN,
                                                     description="LAT,LON: taken near this GPS position")] = None,
                   within: Annotated[float | None, Query(gt=0, le=EARTH_KM, allow_inf_nan=False,
                                                         description="km around near (default 10)")] = None,
                   media: Annotated[Literal["image", "video"] | None,
                                    Query(description="Only images, or only video segments")] = None,
                   ) -> Filters:
    """The filter parameters of every search endpoint, as :class:`Filters` (a dependency)."""
    return Filters.from_strings(folder, after, before, camera, min_width, min_height, format or (), tag or (),
                                place or (), near, within, text, media)


SearchFilters = Annotated[Filters, Depends(search_filters)]
OpenIndex = Annotated[Index, Depends(index_of)]
Holder = Annotated[IndexHolder, Depends(holder_of)]
MaxUpload = Annotated[int, Depends(max_upload_of)]


def links(image_id: int) -> dict:
    """The URLs of an image's thumbnail, file and "more like this"."""
    return {"thumbnail_url": f"{API}/images/{image_id}/thumbnail?size=256",
            "file_url": f"{API}/images/{image_id}/file", "similar_url": f"{API}/images/{image_id}/similar"}
