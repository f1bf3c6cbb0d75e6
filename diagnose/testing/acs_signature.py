"""Server-side checks of the two request signatures the Alibaba Cloud SDK sends.

ACS3-HMAC-SHA256 (the SDK default): parameters in the query string, ``Authorization:
ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<a;b>,Signature=<hex>`` over a canonical request.

RPC v1 HMAC-SHA1 (``signature_algorithm="v2"`` in the SDK's Config): ``Signature`` is a query
parameter, base64 of HMAC-SHA1 keyed with ``secret + "&"`` over ``POST&%2F&<canonical query>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import quote

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def pct(value: str) -> str:
    """RFC 3986 percent-encoding as ACS uses it: only unreserved characters stay."""
    return quote(value, safe="~", encoding="utf-8")


def canonical_query(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{pct(k)}={pct(v)}" for k, v in sorted(pairs))


@dataclass(frozen=True)
class V3Auth:
    access_key_id: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_v3_authorization(value: str) -> V3Auth | None:
    """Split the Authorization header; None when it is not a well-formed ACS3 header."""
    prefix = "ACS3-HMAC-SHA256 "
    if not value or not value.startswith(prefix):
        return None
    fields: dict[str, str] = {}
    for part in value[len(prefix):].split(","):
        key, sep, val = part.strip().partition("=")
        if not sep:
            return None
        fields[key] = val
    try:
        return V3Auth(fields["Credential"], tuple(fields["SignedHeaders"].split(";")),
                      fields["Signature"])
    except KeyError:
        return None


def v3_signature(secret: str, *, method: str, path: str, query: Sequence[tuple[str, str]],
                 headers: Mapping[str, str], signed_headers: Sequence[str],
                 payload_hash: str) -> str:
    """The hex signature the client should have sent. ``headers`` keys must be lowercase."""
    canonical_headers = "".join(f"{name}:{headers.get(name, '').strip()}\n"
                                for name in signed_headers)
    canonical_request = "\n".join([method.upper(), path or "/", canonical_query(query),
                                   canonical_headers, ";".join(signed_headers), payload_hash])
    string_to_sign = "ACS3-HMAC-SHA256\n" + hashlib.sha256(
        canonical_request.encode("utf-8")).hexdigest()
    return hmac.new(secret.encode("utf-8"), string_to_sign.encode("utf-8"),
                    hashlib.sha256).hexdigest()


def v1_signature(secret: str, *, method: str, params: Sequence[tuple[str, str]]) -> str:
    """The base64 signature of an RPC v1 request; ``params`` exclude ``Signature`` itself."""
    string_to_sign = f"{method.upper()}&{pct('/')}&{pct(canonical_query(params))}"
    digest = hmac.new((secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
