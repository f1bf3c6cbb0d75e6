"""Region and credentials for the ECS fetcher, resolved the way the aliyun CLI does.

Region: ``--region``, then ``ALIBABA_CLOUD_REGION_ID`` (and the CLI's two older spellings), then
the chosen profile's ``region_id`` in ``~/.aliyun/config.json``.

Credentials: with ``--profile`` only that profile of ``~/.aliyun/config.json``; without it the
alibabacloud-credentials default chain (environment, OIDC, the CLI's current profile,
``~/.alibabacloud/credentials.ini``, the ECS RAM role, a credentials URI), built from the
library's own providers. We assemble the chain here, at call time, because the library reads
its environment variables once, when it is first imported.

No secret ever appears in a message, a log record or an exception raised from this module.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CredentialsError, UsageError

log = logging.getLogger("diagnose.fetchers.ecs")

REGION_ENV = ("ALIBABA_CLOUD_REGION_ID", "ALIBABACLOUD_REGION_ID", "ALICLOUD_REGION_ID")
PROFILE_ENV = ("ALIBABA_CLOUD_PROFILE", "ALIBABACLOUD_PROFILE", "ALICLOUD_PROFILE")
_REGION_RE = re.compile(r"^[a-z]{2,}(?:-[a-z0-9]+){1,4}$")
_SDK_LOGGERS = ("darabonba-core", "alibabacloud-tea", "credentials", "urllib3.connectionpool")


@dataclass(frozen=True, repr=False)
class AccessKey:
    """An explicit AccessKey pair (the demo server's, or one given by a caller)."""

    access_key_id: str
    access_key_secret: str
    security_token: str | None = None

    def __repr__(self) -> str:
        return f"AccessKey(access_key_id={mask(self.access_key_id)!r}, access_key_secret='***')"

    def as_kwargs(self) -> dict[str, str]:
        return {"access_key_id": self.access_key_id, "access_key_secret": self.access_key_secret}


def mask(value: str | None) -> str:
    """``LTAI5t...`` -> ``LT***ab``: enough to recognise an AccessKey ID, not to use it."""
    if not value:
        return ""
    if len(value) <= 6:
        return "***"
    return f"{value[:2]}***{value[-2:]}"


# --------------------------------------------------------------------------------------------
# Redaction


class SecretFilter(logging.Filter):
    """Replace known secret strings in every record that passes through (message and args)."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__("diagnose-secrets")
        self.secrets = tuple(s for s in secrets if s and len(s) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            text = record.getMessage()
        except Exception:  # a broken format string: keep the raw message only
            text = str(record.msg)
        cleaned = redact(text, self.secrets)
        if cleaned != text:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = redact(str(record.exc_info[1]), self.secrets)
            if exc_text != str(record.exc_info[1]):
                record.exc_info = None
                record.exc_text = None
                record.msg = f"{record.msg} [exception hidden: it contained a secret]"
        return True


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class redacting:  # noqa: N801 - used as a context manager, reads like a function
    """Attach a SecretFilter to our logger and the SDK's loggers for the duration of a fetch."""

    def __init__(self, secrets: Iterable[str]):
        self.filter = SecretFilter(secrets)
        self.loggers = [logging.getLogger(name) for name in (log.name, *_SDK_LOGGERS)]

    def __enter__(self) -> SecretFilter:
        for logger in self.loggers:
            logger.addFilter(self.filter)
        return self.filter

    def __exit__(self, *exc: object) -> None:
        for logger in self.loggers:
            logger.removeFilter(self.filter)


# --------------------------------------------------------------------------------------------
# The aliyun CLI configuration file


def _home(env: Mapping[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))


def cli_config_path(env: Mapping[str, str]) -> Path:
    return _home(env) / ".aliyun" / "config.json"


def load_cli_config(path: Path) -> dict[str, Any] | None:
    """The parsed config file, None when it does not exist. Never echoes its content."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialsError(f"cannot read {path}: {exc.__class__.__name__}") from None
    except json.JSONDecodeError as exc:
        raise CredentialsError(f"{path} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise CredentialsError(f"{path} is not a JSON object")
    return data


def _profiles(config: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    raw = config.get("profiles")
    return [p for p in raw if isinstance(p, Mapping)] if isinstance(raw, list) else []


def chosen_profile_name(flag: str | None, config: Mapping[str, Any] | None,
                        env: Mapping[str, str]) -> str | None:
    """``--profile``, then ``ALIBABA_CLOUD_PROFILE`` (and spellings), then the file's current."""
    if flag:
        return flag
    for name in PROFILE_ENV:
        if env.get(name):
            return env[name]
    if config is not None:
        current = config.get("current")
        if isinstance(current, str) and current:
            return current
    return None


def find_profile(config: Mapping[str, Any] | None, name: str | None) -> Mapping[str, Any] | None:
    if config is None or not name:
        return None
    for profile in _profiles(config):
        if profile.get("name") == name:
            return profile
    return None


# --------------------------------------------------------------------------------------------
# Region


def resolve_region(flag: str | None, env: Mapping[str, str],
                   profile: Mapping[str, Any] | None) -> str:
    candidates: list[tuple[str, Any]] = [("--region", flag)]
    candidates += [(name, env.get(name)) for name in REGION_ENV]
    candidates.append(("the profile's region_id", profile.get("region_id") if profile else None))
    for source, value in candidates:
        if value:
            if not isinstance(value, str) or not _REGION_RE.fullmatch(value):
                shown = str(value)[:40].encode("ascii", "backslashreplace").decode("ascii")
                raise UsageError(f"{shown!r} (from {source}) is not an Alibaba Cloud region id "
                                 "such as cn-hangzhou")
            return value
    raise UsageError("no region: pass --region, set ALIBABA_CLOUD_REGION_ID, or set region_id "
                     "in the aliyun CLI profile")


# --------------------------------------------------------------------------------------------
# Credentials


@dataclass
class _Chain:
    """An ICredentialsProvider that tries its providers in order and sticks to the first that
    works. Error texts from the providers are reduced to their class names."""

    providers: list[tuple[str, Any]]
    _last: Any = field(default=None, repr=False)
    tried: list[str] = field(default_factory=list)

    def get_provider_name(self) -> str:
        return "diagnose"

    def get_credentials(self) -> Any:
        if self._last is not None:
            return self._last.get_credentials()
        self.tried = []
        for label, provider in self.providers:
            try:
                creds = provider.get_credentials()
            except Exception as exc:  # noqa: BLE001 - every provider failure means "next"
                self.tried.append(f"{label} ({exc.__class__.__name__})")
                continue
            if creds is not None and creds.get_access_key_id():
                self._last = provider
                return creds
            self.tried.append(f"{label} (empty)")
        raise CredentialsError(_no_credentials_message(self.tried))

    async def get_credentials_async(self) -> Any:  # the SDK's async API; unused by us
        return self.get_credentials()


def _no_credentials_message(tried: list[str]) -> str:
    where = ", ".join(tried) if tried else "nothing to try"
    return ("no usable Alibaba Cloud credentials (tried: " + where + "); set "
            "ALIBABA_CLOUD_ACCESS_KEY_ID/ALIBABA_CLOUD_ACCESS_KEY_SECRET, run 'aliyun "
            "configure', or pass --profile")


@dataclass(frozen=True)
class Target:
    """Everything needed to build the SDK client, plus what to redact."""

    region: str
    provider: Any = field(repr=False)  # an ICredentialsProvider
    secrets: tuple[str, ...] = field(repr=False)
    source: str = ""  # which link of the chain answered, e.g. "environment", "profile 'dev'"


def _static(key_id: str, secret: str, token: str | None) -> Any:
    from alibabacloud_credentials.provider.static_ak import StaticAKCredentialsProvider
    from alibabacloud_credentials.provider.static_sts import StaticSTSCredentialsProvider

    if token:
        return StaticSTSCredentialsProvider(access_key_id=key_id, access_key_secret=secret,
                                            security_token=token)
    return StaticAKCredentialsProvider(access_key_id=key_id, access_key_secret=secret)


def _default_chain(env: Mapping[str, str], config_path: Path, config: dict | None,
                   profile_name: str | None) -> list[tuple[str, Any]]:
    chain: list[tuple[str, Any]] = []
    key_id = env.get("ALIBABA_CLOUD_ACCESS_KEY_ID")
    secret = env.get("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    if key_id and secret:
        chain.append(("environment", _static(key_id, secret,
                                             env.get("ALIBABA_CLOUD_SECURITY_TOKEN"))))
    oidc = [env.get(n) for n in ("ALIBABA_CLOUD_OIDC_TOKEN_FILE", "ALIBABA_CLOUD_ROLE_ARN",
                                 "ALIBABA_CLOUD_OIDC_PROVIDER_ARN")]
    if all(oidc):
        from alibabacloud_credentials.provider.oidc import OIDCRoleArnCredentialsProvider

        chain.append(("OIDC role", OIDCRoleArnCredentialsProvider(
            oidc_token_file_path=oidc[0], role_arn=oidc[1], oidc_provider_arn=oidc[2],
            role_session_name=env.get("ALIBABA_CLOUD_ROLE_SESSION_NAME") or None,
            sts_region_id=env.get("ALIBABA_CLOUD_STS_REGION") or None)))
    cli_disabled = env.get("ALIBABA_CLOUD_CLI_PROFILE_DISABLED", "").lower() == "true"
    if config is not None and profile_name and not cli_disabled:
        from alibabacloud_credentials.provider.cli_profile import CLIProfileCredentialsProvider

        chain.append((f"aliyun CLI profile {profile_name!r}", CLIProfileCredentialsProvider(
            profile_name=profile_name, profile_file=str(config_path))))
    ini = env.get("ALIBABA_CLOUD_CREDENTIALS_FILE") or str(
        _home(env) / ".alibabacloud" / "credentials.ini")
    if Path(ini).is_file():
        from alibabacloud_credentials.provider.profile import ProfileCredentialsProvider

        chain.append(("credentials.ini", ProfileCredentialsProvider(
            profile_file=ini, profile_name=env.get("ALIBABA_CLOUD_PROFILE") or "default")))
    if env.get("ALIBABA_CLOUD_ECS_METADATA_DISABLED", "").lower() != "true":
        try:
            from alibabacloud_credentials.provider.ecs_ram_role import (
                EcsRamRoleCredentialsProvider,
            )

            chain.append(("ECS RAM role", EcsRamRoleCredentialsProvider(
                role_name=env.get("ALIBABA_CLOUD_ECS_METADATA") or None,
                disable_imds_v1=env.get("ALIBABA_CLOUD_IMDSV1_DISABLED", "").lower() == "true",
                async_update_enabled=False)))
        except ValueError:  # the library itself was imported with the metadata service off
            pass
    uri = env.get("ALIBABA_CLOUD_CREDENTIALS_URI")
    if uri:
        from alibabacloud_credentials.provider.uri import URLCredentialsProvider

        chain.append(("credentials URI", URLCredentialsProvider(uri=uri)))
    return chain


def resolve(*, region: str | None, profile: str | None, credentials: AccessKey | None = None,
            env: Mapping[str, str] | None = None) -> Target:
    """Region and a working credentials provider, or a one-line UsageError/CredentialsError."""
    env = os.environ if env is None else env
    config_path = cli_config_path(env)
    config = load_cli_config(config_path)
    profile_name = chosen_profile_name(profile, config, env)
    profile_data = find_profile(config, profile_name)
    if profile and profile_data is None:
        where = str(config_path) if config is not None else f"{config_path} (file missing)"
        raise CredentialsError(f"profile {profile!r} not found in {where}")
    resolved_region = resolve_region(region, env, profile_data)

    if credentials is not None:
        chain = [("given AccessKey", _static(credentials.access_key_id,
                                             credentials.access_key_secret,
                                             credentials.security_token))]
    elif profile:
        from alibabacloud_credentials.provider.cli_profile import CLIProfileCredentialsProvider

        chain = [(f"aliyun CLI profile {profile!r}", CLIProfileCredentialsProvider(
            profile_name=profile, profile_file=str(config_path)))]
    else:
        chain = _default_chain(env, config_path, config, profile_name)

    provider = _Chain(chain)
    try:
        creds = provider.get_credentials()
    except CredentialsError:
        raise
    except Exception as exc:  # noqa: BLE001 - a provider bug must not leak its text
        raise CredentialsError(f"cannot load credentials: {exc.__class__.__name__}") from None
    secrets = tuple(s for s in (creds.get_access_key_secret(), creds.get_security_token())
                    if s)
    source = next((label for label, p in chain if p is provider._last), "")
    log.debug("credentials from %s, AccessKey ID %s, region %s", source,
              mask(creds.get_access_key_id()), resolved_region)
    return Target(resolved_region, provider, secrets, source)
