"""Storage faults, credentials and locations: which faults are retried, how blocks become fsspec options,
and the clear errors of unusable destinations."""

from __future__ import annotations

import aiohttp
import botocore.exceptions
import pytest
from gcsfs.retry import HttpError
from s3fs.errors import translate_boto_error

from tasks.errors import InputError
from tasks.squad.load import SquadFormatError
from tasks.storage.credentials import redact, storage_options
from tasks.storage.faults import StorageError, is_transient, retrying
from tasks.storage.location import Location


def _client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutObject")


def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc


TRANSIENT = {
    "connection reset": ConnectionResetError(104, "reset by peer"),
    "timeout": TimeoutError("timed out"),
    "gcs 503": HttpError({"code": 503, "message": "backend error"}),
    "gcs 429": HttpError({"code": 429, "message": "rate limit"}),
    "s3 SlowDown as s3fs raises it": translate_boto_error(_client_error("SlowDown", 503)),
    "s3 500": _client_error("InternalError", 500),
    "aiohttp disconnect": aiohttp.ServerDisconnectedError(),
    "botocore endpoint": botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    "wrapped reset": _raised_from(RuntimeError("upload failed"), ConnectionResetError()),
}
PERMANENT = {
    "gcs 403": HttpError({"code": 403, "message": "forbidden"}),
    "gcs 404": HttpError({"code": 404, "message": "no such bucket"}),
    "s3 AccessDenied as s3fs raises it": translate_boto_error(_client_error("AccessDenied", 403)),
    "missing object": FileNotFoundError("atlas/x.json"),
    "bad input": SquadFormatError("train.json: data[0]: missing key 'title'"),
    "bug": ValueError("shapes do not match"),
    "input error raised during a reset": _raised_from(InputError("bad"), ConnectionResetError()),
}


@pytest.mark.parametrize("case", TRANSIENT)
def test_transient_faults_are_retried(case):
    assert is_transient(TRANSIENT[case])


@pytest.mark.parametrize("case", PERMANENT)
def test_permanent_faults_and_bugs_are_not(case):
    assert not is_transient(PERMANENT[case])


def test_retrying_retries_transient_faults_only():
    calls: list[int] = []

    def flaky(fail_with: BaseException, times: int) -> str:
        calls.append(1)
        if len(calls) <= times:
            raise fail_with
        return "done"

    assert retrying(flaky, ConnectionResetError(), 2, delay=0) == "done" and len(calls) == 3
    calls.clear()
    with pytest.raises(PermissionError):
        retrying(flaky, PermissionError("denied"), 2, delay=0)
    assert len(calls) == 1
    calls.clear()
    with pytest.raises(ConnectionResetError):
        retrying(flaky, ConnectionResetError(), 9, attempts=3, delay=0)
    assert len(calls) == 3


def test_credential_blocks_become_options_for_their_own_cloud_only(prefect_server):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from prefect_aws import AwsCredentials
    from prefect_gcp import GcpCredentials

    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    account = {"type": "service_account", "project_id": "p", "private_key": pem, "private_key_id": "k1",
               "client_email": "atlas@p.iam.gserviceaccount.com", "client_id": "1",
               "token_uri": "http://127.0.0.1:9/token"}
    GcpCredentials(service_account_info=account, project="p").save("atlas-gcp", overwrite=True)
    AwsCredentials(aws_access_key_id="AKIA-ATLAS", aws_secret_access_key="s3cr3t-value",
                   aws_client_parameters={"endpoint_url": "http://127.0.0.1:9"}).save("atlas-aws", overwrite=True)
    assert storage_options("gs://b/x", "gcp-credentials/atlas-gcp") == {"token": account, "project": "p"}
    assert storage_options("s3://b/x", "aws-credentials/atlas-aws") == {
        "key": "AKIA-ATLAS", "secret": "s3cr3t-value", "client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}}
    assert storage_options("s3://b/x", "gcp-credentials/atlas-gcp") == {}, "a GCP block says nothing of S3"
    assert storage_options("/data/x", "aws-credentials/atlas-aws") == {}
    assert storage_options("gs://b/x", None) == {}, "default: the environment's credentials"
    with pytest.raises(InputError, match="expected a Prefect block as 'gcp-credentials/NAME'"):
        storage_options("gs://b/x", "my-key.json")
    with pytest.raises(InputError, match="'aws-credentials/missing': no such Prefect block"):
        storage_options("s3://b/x", "aws-credentials/missing")


def test_redact_masks_every_secret_in_the_options():
    options = {"key": "AKIA-ATLAS", "secret": "s3cr3t-value", "token": {"private_key": "-----BEGIN KEY-----x"}}
    text = "denied for AKIA-ATLAS with s3cr3t-value and -----BEGIN KEY-----x"
    assert redact(text, options) == "denied for *** with *** and ***"


@pytest.mark.parametrize("url, message", [
    ("foo://bucket/x", "foo://bucket/x: not a usable location"),
    ("gs://", "gs://: cannot write: the URL names no bucket"),
])
def test_unusable_destination_urls_are_named(url, message):
    with pytest.raises(StorageError, match=message):
        Location.open(url).check_writable()


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "taken").write_text("not a folder")
    with pytest.raises(StorageError, match=r"taken/dataset: cannot write: .*taken is a file, not a folder"):
        Location.open(str(tmp_path / "taken" / "dataset")).check_writable()
    assert (tmp_path / "taken").read_text() == "not a folder"
    Location.open(str(tmp_path / "new" / "dataset")).check_writable()
    assert not (tmp_path / "new").exists(), "the check creates nothing"
