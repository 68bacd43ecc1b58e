"""Storage credentials: the environment's, or a Prefect block named by the user ('gcp-credentials/NAME',
'aws-credentials/NAME') for the URLs of its own cloud. Configs only ever hold the block's name: secrets stay out
of flow parameters, dataset.json and logs."""

from __future__ import annotations

import functools

from tasks.errors import InputError

BLOCK_KINDS = {"gcp-credentials": ("gs", "gcs"), "aws-credentials": ("s3", "s3a")}


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0] if "://" in url else "file"


def _block_kind(credentials: str) -> str:
    kind, _, name = credentials.partition("/")
    if kind not in BLOCK_KINDS or not name:
        raise InputError(f"credentials '{credentials}': expected a Prefect block as 'gcp-credentials/NAME' or "
                         "'aws-credentials/NAME'")
    return kind


def _load_block(credentials: str):
    kind, name = _block_kind(credentials), credentials.partition("/")[2]
    try:
        if kind == "gcp-credentials":
            from prefect_gcp import GcpCredentials as block_class
        else:
            from prefect_aws import AwsCredentials as block_class
    except ImportError as exc:
        raise InputError(f"credentials '{credentials}': install the cloud extra (pip install "
                         f"'squad-attention-atlas[cloud]') to use Prefect credential blocks ({exc})") from exc
    try:
        return block_class.load(name)
    except ValueError as exc:
        raise InputError(f"credentials '{credentials}': no such Prefect block ({exc})") from exc


@functools.lru_cache(maxsize=16)
def _block_options(credentials: str) -> tuple[tuple[str, object], ...]:
    block = _load_block(credentials)
    if credentials.startswith("gcp-credentials/"):
        info = block.service_account_info.get_secret_value() if block.service_account_info else None
        token = dict(info) if info else (str(block.service_account_file) if block.service_account_file else None)
        options = {"token": token, "project": block.project}
    else:
        client = block.aws_client_parameters
        client_kwargs = {"endpoint_url": client.endpoint_url} if client and client.endpoint_url else {}
        options = {"key": block.aws_access_key_id,
                   "secret": block.aws_secret_access_key.get_secret_value() if block.aws_secret_access_key else None,
                   "token": block.aws_session_token.get_secret_value() if block.aws_session_token else None,
                   "profile": block.profile_name, "client_kwargs": client_kwargs or None}
    return tuple((key, value) for key, value in options.items() if value is not None)


def storage_options(url: str, credentials: str | None) -> dict:
    """fsspec options for `url`: none (the environment's credentials) unless `credentials` names a Prefect
    block for the URL's cloud."""
    if credentials is None or protocol_of(url) not in BLOCK_KINDS[_block_kind(credentials)]:
        return {}
    return dict(_block_options(credentials))


def _secrets(options: dict) -> list[str]:
    values: list[str] = []
    for key, value in options.items():
        if isinstance(value, dict):
            values += _secrets(value)
        elif isinstance(value, str) and key in {"secret", "token", "private_key", "key", "private_key_id"}:
            values.append(value)
    return [v for v in values if len(v) >= 4]


def redact(text: str, options: dict) -> str:
    """`text` with every credential value in `options` masked."""
    for secret in _secrets(options):
        text = text.replace(secret, "***")
    return text
