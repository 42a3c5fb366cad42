"""Who may call: TLS / mutual TLS server credentials and bearer-token authentication.

TLS: ``tls_cert`` + ``tls_key`` (PEM) serve TLS; ``tls_client_ca`` adds mutual TLS: a
client must present a certificate signed by that CA, or the handshake fails.

Tokens: ``tokens_file`` (one per line, ``#`` comments) and/or ``tokens`` (the environment
variable ``TEMPOREC_TOKENS``, comma separated). With any token configured, every call
except health, reflection and ``temporec.v1.Admin`` (which checks its own admin tokens)
must send ``authorization: Bearer <token>``. A missing, malformed or unknown token ends
the call with UNAUTHENTICATED: the caller has not proved who it is. PERMISSION_DENIED is
left for a caller that is known but may not do what it asks (the Admin service's
non-admin tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import ssl
from collections.abc import Iterable
from pathlib import Path

import grpc

from temporec.grpc.interceptors import CallPipeline, Recorder, metadata_values
from temporec.serving.config import ConfigError, ServerConfig

log = logging.getLogger(__name__)

AUTHORIZATION_KEY = "authorization"
#: Methods that check their own credentials (the Admin service's admin tokens).
SELF_AUTHENTICATING_PREFIXES = ("/temporec.v1.Admin/",)


# -- TLS --------------------------------------------------------------------------------


def server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    """TLS credentials from ``tls_cert``, ``tls_key`` and ``tls_client_ca``; None when no
    TLS is configured. Files are read and checked now, so that a wrong path or a key that
    does not match its certificate stops the server at start with the setting named."""
    if not (config.tls_cert or config.tls_key or config.tls_client_ca):
        return None
    if not (config.tls_cert and config.tls_key):
        raise ConfigError(
            "tls_cert, tls_key: set both (the server's PEM certificate chain and its private key) "
            "to serve TLS" + ("; tls_client_ca needs them too" if config.tls_client_ca else "")
        )
    certificate = read_file("tls_cert", config.tls_cert)
    key = read_file("tls_key", config.tls_key)
    check_key_pair(config.tls_cert, config.tls_key)
    client_ca = read_file("tls_client_ca", config.tls_client_ca) if config.tls_client_ca else None
    if client_ca is not None:
        check_ca(config.tls_client_ca)
    log.info("TLS on%s", "; clients must present a certificate signed by tls_client_ca" if client_ca else "")
    return grpc.ssl_server_credentials(
        [(key, certificate)], root_certificates=client_ca, require_client_auth=bool(client_ca)
    )


def read_file(setting: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {exc.strerror}") from exc


def check_key_pair(cert_path: str, key_path: str) -> None:
    def encrypted() -> bytes:
        raise ConfigError(f"tls_key: {key_path} is encrypted; gRPC needs the key unencrypted (PEM)")

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path, password=encrypted)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"tls_cert, tls_key: {cert_path} and {key_path} are not a PEM certificate chain and its "
            f"private key ({exc.reason or exc})"
        ) from exc


def check_ca(path: str) -> None:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=path)
    except ssl.SSLError as exc:
        raise ConfigError(f"tls_client_ca: {path} is not a PEM CA certificate ({exc.reason or exc})") from exc


# -- tokens -----------------------------------------------------------------------------


def load_tokens(config: ServerConfig) -> list[str]:
    """The bearer tokens from ``tokens`` (comma separated) and ``tokens_file``."""
    return tokens_from(config.tokens, "tokens (TEMPOREC_TOKENS)", config.tokens_file, "tokens_file")


def tokens_from(listed: str, listed_setting: str, file: str, file_setting: str) -> list[str]:
    """Tokens from a comma-separated setting and a file setting (one token a line, ``#``
    comments); a file that cannot be read or holds none is a ``ConfigError`` naming it."""
    tokens = [token.strip() for token in listed.split(",") if token.strip()]
    for token in tokens:
        check_token(token, listed_setting)
    if file:
        from_file = read_tokens_file(Path(file), file_setting)
        if not from_file:
            raise ConfigError(f"{file_setting}: {file} holds no token (one per line, # comments)")
        tokens += from_file
    return tokens


def read_tokens_file(path: Path, setting: str) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{setting}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    tokens = []
    for number, line in enumerate(lines, 1):
        token = line.split("#", 1)[0].strip()
        if token:
            check_token(token, f"{setting}: {path}, line {number}")
            tokens.append(token)
    return tokens


def check_token(token: str, where: str) -> None:
    """Tokens travel in a header: visible ASCII, no spaces or commas. The error never
    shows the token."""
    if not all("!" <= c <= "~" and c != "," for c in token):
        raise ConfigError(f"{where}: a token may hold only visible ASCII characters, without spaces or commas")


def digest(token: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison time independent of the length.
    return hashlib.sha256(token.encode()).digest()


class BearerTokenAuth:
    """The token check, a gate of ``CallPipeline``: a call passes when its
    ``authorization`` metadata is ``Bearer <token>`` with a configured token, and ends
    with UNAUTHENTICATED otherwise. Health, reflection (the pipeline lets them pass) and
    the self-authenticating Admin methods are not checked."""

    def __init__(self, tokens: Iterable[str]):
        self._digests = [digest(token) for token in tokens]
        if not self._digests:
            raise ValueError("BearerTokenAuth needs at least one token")

    def problem(self, method: str, metadata) -> str | None:
        """Why the call's metadata does not authenticate it, or None when it does (or
        when ``method`` checks its own credentials)."""
        if method.startswith(SELF_AUTHENTICATING_PREFIXES):
            return None
        return self.token_problem(metadata_values(metadata, AUTHORIZATION_KEY))

    def token_problem(self, values: list[str]) -> str | None:
        """Why these ``authorization`` values do not authenticate, or None when they do.
        The messages never repeat what the caller sent."""
        if not values:
            return "authorization: send the metadata 'authorization: Bearer <token>'"
        token = bearer_token(values)
        if token is None:
            return "authorization: expected exactly one value of the form 'Bearer <token>'"
        if not token_matches(token, self._digests):
            return "authorization: the bearer token is not valid for this server"
        return None


def bearer_token(values: list[str]) -> str | None:
    """The token of exactly one ``authorization`` value of the form ``Bearer <token>``."""
    if len(values) != 1:
        return None
    scheme, _, token = values[0].partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def token_matches(token: str, digests: list[bytes]) -> bool:
    presented = digest(token)
    # Compare with every token, in constant time each: no early exit to time.
    return any([hmac.compare_digest(presented, known) for known in digests])


def token_gate(config: ServerConfig) -> BearerTokenAuth | None:
    """The token check that ``config`` asks for; None when it names no token."""
    tokens = load_tokens(config)
    if not tokens:
        return None
    log.info("bearer-token authentication on: %d token(s)", len(tokens))
    if not config.tls_cert:
        log.warning("bearer tokens are required but TLS is off: tokens cross the network in clear text")
    return BearerTokenAuth(tokens)


def call_pipeline(config: ServerConfig, recorder: Recorder | None = None) -> CallPipeline:
    """The server's interceptor (``CallPipeline``) for ``config``: its token check and
    concurrency limit, counting calls into ``recorder``."""
    auth = token_gate(config)
    return CallPipeline(config.max_concurrent_rpcs, gates=[auth] if auth else [], recorder=recorder)
