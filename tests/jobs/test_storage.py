"""Both storage backends: the local directory and S3 over HTTP (a moto server)."""

import time

import httpx
import pytest

from jobs.settings import Settings
from jobs.storage import (
    LinkSecretMissing,
    LocalStorage,
    ObjectNotFound,
    StorageUnavailable,
    storage_from_settings,
)
from tests.support.servers import moto_s3


@pytest.fixture(scope="module")
def s3_endpoint():
    with moto_s3("store-test") as endpoint:
        yield endpoint


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path, monkeypatch):
    if request.param == "local":
        return storage_from_settings(
            Settings(_env_file=None, storage_url=f"file://{tmp_path}/store", link_signing_secret="s" * 32)
        )
    endpoint = request.getfixturevalue("s3_endpoint")
    return storage_from_settings(
        Settings(
            _env_file=None,
            storage_url="s3://store-test/prefix",
            s3_endpoint_url=endpoint,
            s3_access_key_id="test",
            s3_secret_access_key="test",
        )
    )


def test_put_get_delete_round_trip(storage, tmp_path):
    storage.put_bytes("inputs/j1/image.png", b"png", "image/png")
    path = tmp_path / "v.mp4"
    path.write_bytes(b"mp4")
    storage.put_file("outputs/j1/animation.mp4", path, "video/mp4")
    assert storage.get_bytes("inputs/j1/image.png") == b"png"
    assert storage.get_bytes("outputs/j1/animation.mp4") == b"mp4"
    storage.delete_prefix("outputs/j1")
    with pytest.raises(ObjectNotFound):
        storage.get_bytes("outputs/j1/animation.mp4")
    storage.check()


@pytest.mark.parametrize("key", ["../etc/passwd", "/abs", "a//b", "a/./b", ""])
def test_keys_cannot_escape_the_root(storage, key):
    with pytest.raises(ValueError):
        storage.put_bytes(key, b"x", "text/plain")


def test_s3_presigned_url_downloads_over_http(s3_endpoint):
    storage = storage_from_settings(
        Settings(
            _env_file=None,
            storage_url="s3://store-test",
            s3_endpoint_url=s3_endpoint,
            s3_access_key_id="test",
            s3_secret_access_key="test",
        )
    )
    storage.put_bytes("outputs/j2/poster.png", b"poster", "image/png")
    url = storage.url("outputs/j2/poster.png", 60)
    assert "X-Amz-Expires=60" in url and "X-Amz-Signature=" in url
    assert httpx.get(url).content == b"poster"


def test_s3_unreachable_endpoint_raises_storage_unavailable():
    storage = storage_from_settings(
        Settings(
            _env_file=None,
            storage_url="s3://b",
            s3_endpoint_url="http://127.0.0.1:9",
            s3_access_key_id="t",
            s3_secret_access_key="t",
        )
    )
    storage.client.meta.config.retries = {"max_attempts": 1}
    with pytest.raises(StorageUnavailable):
        storage.check()


def test_local_links_are_signed_and_expire(tmp_path):
    storage = LocalStorage(tmp_path, b"k" * 32)
    url = storage.url("outputs/j/animation.mp4", 60, "http://api")
    assert url.startswith("http://api/files/outputs/j/animation.mp4?expires=")
    expires = int(url.split("expires=")[1].split("&")[0])
    sig = url.split("sig=")[1]
    assert storage.verify("outputs/j/animation.mp4", expires, sig)
    assert not storage.verify("outputs/j/poster.png", expires, sig)
    assert not storage.verify("outputs/j/animation.mp4", expires + 1, sig)
    old = int(time.time()) - 1
    assert not storage.verify("outputs/j/animation.mp4", old, storage.sign("outputs/j/animation.mp4", old))


def test_local_link_key_is_shared_through_redis_in_development(redis_client, tmp_path):
    settings = Settings(
        _env_file=None, storage_url=f"file://{tmp_path}", key_prefix="linktest", env="development"
    )
    a = storage_from_settings(settings, redis_client)
    b = storage_from_settings(settings, redis_client)
    assert isinstance(a, LocalStorage) and isinstance(b, LocalStorage) and a.secret == b.secret


def test_local_link_key_is_never_derived_from_the_webhook_secret(tmp_path):
    webhook = "whsec_" + "QUJD" * 8
    with pytest.raises(LinkSecretMissing):  # production: no link secret, no start
        storage_from_settings(
            Settings(_env_file=None, storage_url=f"file://{tmp_path}", webhook_secret=webhook)
        )
    dev = Settings(
        _env_file=None, storage_url=f"file://{tmp_path}", webhook_secret=webhook, env="development"
    )
    a, b = storage_from_settings(dev), storage_from_settings(dev)
    assert isinstance(a, LocalStorage) and isinstance(b, LocalStorage)
    assert a.secret != b.secret  # random per process (without Redis), not a function of the webhook secret
    with pytest.raises(ValueError, match="webhook secret"):
        Settings(_env_file=None, webhook_secret=webhook, link_signing_secret=webhook)


@pytest.mark.parametrize(
    "sig", ["", "ab", "é" * 64, "\udcff" * 64, "0" * 63, "0" * 65, "G" * 64, "00" * 32 + "\x00"]
)
def test_hostile_signatures_are_refused_without_raising(tmp_path, sig):
    storage = LocalStorage(tmp_path, b"k" * 32)
    assert storage.verify("outputs/j/animation.mp4", int(time.time()) + 60, sig) is False


def test_s3_links_use_the_public_endpoint_while_transfers_use_the_internal_one(s3_endpoint):
    settings = Settings(
        _env_file=None,
        storage_url="s3://store-test",
        s3_endpoint_url=s3_endpoint,
        s3_public_endpoint_url="http://files.example.test:9000",
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )
    storage = storage_from_settings(settings)
    storage.put_bytes("outputs/j3/poster.png", b"poster", "image/png")  # through the internal name
    url = storage.url("outputs/j3/poster.png", 60)
    assert url.startswith("http://files.example.test:9000/store-test/outputs/j3/poster.png?")
    assert "X-Amz-SignedHeaders=host" in url  # signed for the public host, not the internal one
    assert storage.get_bytes("outputs/j3/poster.png") == b"poster"
