"""Visit photos: cleaned of what the phone wrote into them, kept once by content hash, in a folder
(`liangxin dev`, tests) or an S3-compatible object store (MinIO in compose, the cloud's object
storage in Kubernetes), chosen by `LIANGXIN_PHOTO_STORE`.

A phone's JPEG carries EXIF: the camera's and phone's make, model and serial numbers, the owner's
name, GPS, thumbnails. Every photo is decoded and re-encoded (JPEG at quality 90, PNG losslessly)
without any of it; its orientation is applied to the pixels first so it still shows upright. The
stored bytes are what is hashed, so the same picture sent twice is stored once.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import tempfile
from collections.abc import Awaitable
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, TypeVar

from shared.errors import ProblemError
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)
T = TypeVar("T")
IMAGE_TYPES = {b"\xff\xd8\xff": ("image/jpeg", "jpg", "JPEG"), b"\x89PNG\r\n\x1a\n": ("image/png", "png", "PNG")}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png"}


def key_of(sha256: str, content_type: str) -> str:
    return f"photos/{sha256[:2]}/{sha256}.{EXTENSIONS[content_type]}"


def clean(data: bytes, *, max_pixels: int) -> tuple[bytes, str]:
    """The photo re-encoded without metadata, and its content type; 415 for anything that is not a
    readable JPEG or PNG, 413 beyond the pixel limit (a small file can decode to gigabytes)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    kind = next((v for magic, v in IMAGE_TYPES.items() if data.startswith(magic)), None)
    if kind is None:
        raise ProblemError(415, "send a JPEG or PNG photo", code="unsupported-media-type")
    content_type, _, image_format = kind
    try:
        with Image.open(io.BytesIO(data), formats=[image_format]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ProblemError(413, f"a photo may have at most {max_pixels} pixels", code="payload-too-large")
            upright = ImageOps.exif_transpose(image)
            wanted = ("RGB", "L") if image_format == "JPEG" else ("RGB", "RGBA", "L", "LA")
            pixels = upright if upright.mode in wanted else upright.convert("RGBA" if image_format == "PNG" else "RGB")
            # A new image from the pixels alone: nothing of the original's info (EXIF, XMP, ICC, text
            # chunks, comments) can ride along into the encoder.
            bare = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())
            out = io.BytesIO()
            if image_format == "JPEG":
                bare.save(out, format="JPEG", quality=90)
            else:
                bare.save(out, format="PNG", optimize=True)
    except ProblemError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError):
        raise ProblemError(
            415, "the photo could not be read as a JPEG or PNG image", code="unsupported-media-type"
        ) from None
    return out.getvalue(), content_type


class PhotoStore(Protocol):
    """Where photo bytes live, by key (`photos/ab/<sha256>.jpg`)."""

    async def put(self, key: str, data: bytes, content_type: str) -> None: ...

    async def get(self, key: str) -> bytes | None: ...


class LocalPhotoStore:
    """A folder: for `liangxin dev` and tests (one machine, one process writing)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, key: str) -> Path:
        return self.folder / key.removeprefix("photos/")

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        target = self._path(key)
        if target.exists():
            return
        # Stored once by content, whoever sends it and however often: write aside, then rename.
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, target)

    async def get(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.exists() else None


class S3PhotoStore:
    """An S3-compatible object store through boto3, whose calls block: each runs in a thread."""

    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = settings.s3_bucket
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            region_name=settings.s3_region,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            # Path-style addressing: MinIO and most self-hosted stores have no per-bucket host names.
            config=Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 3}, connect_timeout=5, read_timeout=30
            ),
        )
        self._bucket_checked = False

    def _ensure_bucket(self) -> None:
        if self._bucket_checked:
            return
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError:
            try:
                self.client.create_bucket(Bucket=self.bucket)
            except ClientError as exc:  # another process or thread made it meanwhile
                if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
        self._bucket_checked = True

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        self._ensure_bucket()
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def _get(self, key: str) -> bytes | None:
        from botocore.exceptions import ClientError

        self._ensure_bucket()
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise
        body: bytes = found["Body"].read()
        return body

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        await _unavailable_as_503(asyncio.to_thread(self._put, key, data, content_type))

    async def get(self, key: str) -> bytes | None:
        return await _unavailable_as_503(asyncio.to_thread(self._get, key))


async def _unavailable_as_503(call: Awaitable[T]) -> T:
    """An object store that is down or refuses us is the server's trouble, said plainly: 503, and
    the phone sends the photo again later (a photo is stored once by content, so that is harmless)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return await call
    except (BotoCoreError, ClientError) as exc:
        log.error("photo store unavailable", extra={"error": type(exc).__name__})
        raise ProblemError(
            503, "the photo store is unavailable; send the photo again later", code="unavailable"
        ) from None


@lru_cache(maxsize=4)
def _store(kind: str, folder: str, endpoint: str | None, bucket: str) -> PhotoStore:
    settings = get_settings()
    if kind == "s3":
        return S3PhotoStore(settings)
    return LocalPhotoStore(Path(folder))


def store() -> PhotoStore:
    """The store the settings name (one client per setting, reused)."""
    settings = get_settings()
    folder = settings.photo_dir or (settings.data_dir / "photos")
    return _store(settings.photo_store, str(folder), settings.s3_endpoint_url, settings.s3_bucket)
