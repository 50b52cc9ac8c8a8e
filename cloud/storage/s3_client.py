"""The S3 side of the object stores: a boto3 client on one bucket and prefix, its errors mapped.

:class:`S3Location` wraps the few calls the crop and bundle stores make (conditional put,
head, get, presign) and translates botocore's failures into
:class:`~lensflow.cloud.storage.errors.StorageError` once, here:

- the store unreachable, a timeout, a 5xx, throttling: transient; the error's ``__cause__``
  is a :class:`ConnectionError` (an ``OSError``, chained to botocore's own), which is what
  :func:`lensflow.cloud.worker.retry.is_transient` retries;
- the whole store refused (access denied, a bad or expired key, no credentials, no such
  bucket: a password rotation, a deleted bucket): transient too, the same way: every object
  would fail alike, so the batch waits for an operator rather than being dead-lettered;
- a refusal of this one object (its bytes damaged on the way: ``BadDigest``, a checksum
  mismatch; a key or body the store refuses): raised from botocore's error, not transient:
  retrying would not help.

Credentials come only from boto3's chain (``AWS_ACCESS_KEY_ID``, a profile, a role).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, NoReturn

from lensflow.cloud.storage.errors import RangeNotSatisfiableError, StorageError

if TYPE_CHECKING:
    from lensflow.shared.config.cloud import S3CropStoreConfig

logger = logging.getLogger(__name__)

_CHUNK = 1024 * 1024
_ALREADY_THERE = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_OBJECT_REFUSALS = frozenset(
    {
        "BadDigest",
        "InvalidDigest",
        "XAmzContentSHA256Mismatch",
        "EntityTooLarge",
        "EntityTooSmall",
        "KeyTooLongError",
        "InvalidObjectState",
        "InvalidRange",
    }
)
"""S3 refusals of the one object or request: permanent. Any other code is the store's."""
_STORE_REFUSALS = {
    "NoSuchBucket": "the bucket does not exist: ",
    "AccessDenied": "access denied (check the credentials and the bucket policy): ",
    "InvalidAccessKeyId": "the access key is not known to the store: ",
    "SignatureDoesNotMatch": "the secret key does not match the access key: ",
    "ExpiredToken": "the credentials have expired: ",
    "InvalidToken": "the session token is not valid: ",
}
"""Refusals of every request, named plainly in the message (transient: see the module)."""


def _client_error_code(err: Exception) -> tuple[str, int]:
    """The S3 error code and HTTP status of a botocore ``ClientError``."""
    response: dict[str, Any] = getattr(err, "response", {}) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return code, status


def fail(err: Exception, *, doing: str) -> NoReturn:
    """Raise the StorageError for a botocore failure of ``doing`` (``put s3://b/k``).

    Transient failures (the store down or refusing everything) are raised from a
    :class:`ConnectionError` (chained to ``err``), refusals of the one object from ``err``
    itself (see the module).

    Raises:
        StorageError: Always.

    """
    from botocore.exceptions import ClientError

    if isinstance(err, ClientError):
        code = _client_error_code(err)[0]
        message = f"could not {doing}: {_STORE_REFUSALS.get(code, '')}{err}"
        transient = code not in _OBJECT_REFUSALS
    else:
        message, transient = _botocore_failure(err, doing=doing)
    if not transient:
        raise StorageError(message) from err
    logger.warning("object store unavailable: %s", message)
    cause = ConnectionError(f"object store unavailable: {err}")
    cause.__cause__ = err
    raise StorageError(message) from cause


def _botocore_failure(err: Exception, *, doing: str) -> tuple[str, bool]:
    """The message of a botocore failure that is no S3 answer, and whether it is transient."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import (
        CredentialRetrievalError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(err, NoCredentialsError):
        return (
            f"could not {doing}: expected S3 credentials from the environment "
            "(AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a profile or a role), got none",
            True,
        )
    if isinstance(err, CredentialRetrievalError | PartialCredentialsError):
        return f"could not {doing}: S3 credentials unusable: {err}", True
    transient = isinstance(err, BotoConnectionError | HTTPClientError)
    return f"could not {doing}: {err}", transient


def _base64_digest(sha256: str) -> str:
    """The base64 of the raw digest a hex sha256 spells (S3's ``ChecksumSHA256`` form)."""
    return base64.b64encode(bytes.fromhex(sha256)).decode("ascii")


@dataclass(frozen=True)
class S3Location:
    """A bucket and key prefix, with the client that reaches them and how URLs are presigned.

    Attributes:
        client: A boto3 S3 client (thread-safe: shared by the writer threads).
        bucket: The bucket.
        prefix: Prepended to every key (empty, or ending with ``/``).
        presign_ttl_s: How long a presigned GET URL stays valid.
        presigner: The client that signs URLs for the clients' way to the store (its public
            endpoint); ``client`` when None.

    """

    client: Any
    bucket: str
    prefix: str = ""
    presign_ttl_s: int = 300
    presigner: Any = None

    @classmethod
    def from_config(cls, config: S3CropStoreConfig, *, connections: int = 16) -> S3Location:
        """Build the client a ``type: s3`` config describes (credentials from the environment).

        Args:
            config: The bucket, endpoint, region, timeouts and retries.
            connections: Size of the client's connection pool (the writer threads).

        Raises:
            StorageError: botocore refuses the settings (an unknown region name, say).

        """
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError

        style = config.addressing_style or ("path" if config.endpoint else None)
        settings = Config(
            connect_timeout=config.timeout_s,
            read_timeout=config.timeout_s,
            retries={"max_attempts": config.max_attempts, "mode": "standard"},
            max_pool_connections=connections,
            signature_version="s3v4",
            s3={"addressing_style": style} if style else None,
        )
        session = boto3.session.Session()
        try:
            client = session.client(
                "s3", endpoint_url=config.endpoint, region_name=config.region, config=settings
            )
            presigner = None
            if config.public_endpoint:  # signs for the host clients use, never connects
                presigner = session.client(
                    "s3",
                    endpoint_url=config.public_endpoint,
                    region_name=config.region,
                    config=settings,
                )
        except (BotoCoreError, ValueError) as err:
            raise StorageError(
                f"expected usable S3 settings for bucket {config.bucket!r}, got {err}"
            ) from err
        return cls(
            client=client,
            bucket=config.bucket,
            prefix=config.prefix,
            presign_ttl_s=config.presign_ttl_s,
            presigner=presigner,
        )

    def url(self, key: str) -> str:
        """``s3://bucket/key``, for messages and logs."""
        return f"s3://{self.bucket}/{key}"

    def put_if_absent(self, key: str, body: bytes | IO[bytes], *, sha256: str) -> bool:
        """Create ``key`` unless it exists (``If-None-Match: *``); whether this call created it.

        The store checks the body against ``sha256`` (``x-amz-checksum-sha256``), so bytes
        damaged on the way are refused rather than stored under their would-be hash.

        Raises:
            StorageError: The put failed (transient or not, see :func:`fail`).

        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",  # kept with the object: confirm_stored compares it
                ChecksumSHA256=_base64_digest(sha256),
            )
        except ClientError as err:
            if _client_error_code(err)[0] in _ALREADY_THERE:
                return False
            fail(err, doing=f"put {self.url(key)}")
        except BotoCoreError as err:
            fail(err, doing=f"put {self.url(key)}")
        return True

    def size(self, key: str) -> int | None:
        """The stored size of ``key``; None if there is no such object.

        Raises:
            StorageError: The store could not be asked.

        """
        head = self._head(key)
        return None if head is None else int(head["ContentLength"])

    def _head(self, key: str) -> dict[str, Any] | None:
        """The ``head_object`` answer for ``key``, its checksums asked for; None if not stored."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            head: dict[str, Any] = self.client.head_object(
                Bucket=self.bucket, Key=key, ChecksumMode="ENABLED"
            )
        except ClientError as err:
            if _client_error_code(err)[0] in _NOT_FOUND:
                return None
            fail(err, doing=f"look up {self.url(key)}")
        except BotoCoreError as err:
            fail(err, doing=f"look up {self.url(key)}")
        return head

    def confirm_stored(self, key: str, *, size: int, sha256: str) -> None:
        """Check that the object a conditional put found at ``key`` is the bytes put.

        Its stored ``ChecksumSHA256`` is compared when the store keeps one (the put sends
        it), its size otherwise.

        Raises:
            StorageError: No object yet (a concurrent writer still busy: transient, caused by
                a ``ConnectionError``), or other bytes (not transient: the store holds
                another object under this content address).

        """
        head = self._head(key)
        if head is None:
            raise StorageError(
                f"expected {self.url(key)} after its conditional put was refused, got none yet"
            ) from ConnectionError("a concurrent write of the same object has not finished")
        stored = int(head["ContentLength"])
        checksum = head.get("ChecksumSHA256")
        if stored != size:
            raise StorageError(
                f"expected {self.url(key)} to hold the {size} bytes of its sha256, got "
                f"{stored} bytes stored under it (another object at this content address)"
            )
        if checksum is not None and checksum != _base64_digest(sha256):
            raise StorageError(
                f"expected {self.url(key)} to hold bytes with sha256 {sha256}, got bytes with "
                f"checksum {checksum} stored under it (another object at this content address)"
            )

    def open(self, key: str, *, byte_range: str | None = None) -> dict[str, Any] | None:
        """The ``get_object`` answer for ``key`` (its ``Body`` unread); None if not stored.

        Args:
            key: The object key.
            byte_range: An HTTP ``Range`` value (``bytes=100-``) to read only that part.

        Raises:
            RangeNotSatisfiableError: ``byte_range`` starts at or past the object's end.
            StorageError: The store could not be read.

        """
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {} if byte_range is None else {"Range": byte_range}
        try:
            answer: dict[str, Any] = self.client.get_object(Bucket=self.bucket, Key=key, **extra)
        except ClientError as err:
            code = _client_error_code(err)[0]
            if code in _NOT_FOUND:
                return None
            if code == "InvalidRange":
                self._unsatisfiable(key, byte_range=byte_range, err=err)
            fail(err, doing=f"read {self.url(key)}")
        except BotoCoreError as err:
            fail(err, doing=f"read {self.url(key)}")
        return answer

    def _unsatisfiable(self, key: str, *, byte_range: str | None, err: Exception) -> NoReturn:
        """Raise the 416 error of ``byte_range``, with the object's size (S3's or a head's)."""
        error: dict[str, Any] = getattr(err, "response", {}).get("Error", {})
        actual = str(error.get("ActualObjectSize", ""))
        size = int(actual) if actual.isdigit() else self.size(key)
        if size is None:
            fail(err, doing=f"read {self.url(key)}")
        raise RangeNotSatisfiableError(
            f"expected a range within the {size} bytes of {self.url(key)}, got {byte_range!r}",
            size=size,
        ) from err

    def read(self, key: str) -> bytes | None:
        """The whole object ``key``; None if not stored.

        Raises:
            StorageError: The store could not be read.

        """
        from botocore.exceptions import BotoCoreError

        answer = self.open(key)
        if answer is None:
            return None
        try:
            data: bytes = answer["Body"].read()
        except (BotoCoreError, OSError) as err:
            fail(err, doing=f"read {self.url(key)}")
        return data

    @staticmethod
    def chunks(body: Any) -> Iterator[bytes]:
        """Iterate a ``get_object`` body in 1 MiB chunks, closing it at the end."""
        try:
            yield from body.iter_chunks(_CHUNK)
        finally:
            body.close()

    def presign(self, key: str) -> str:
        """A GET URL for ``key`` valid ``presign_ttl_s`` seconds (signed here, no request made).

        Raises:
            StorageError: The URL cannot be signed (no credentials).

        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            url: str = (self.presigner or self.client).generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=self.presign_ttl_s,
            )
        except (BotoCoreError, ClientError) as err:
            fail(err, doing=f"presign {self.url(key)}")
        return url

    def close(self) -> None:
        """Close the clients' connection pools."""
        self.client.close()
        if self.presigner is not None:
            self.presigner.close()
