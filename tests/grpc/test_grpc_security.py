"""Who may call: TLS, mutual TLS and bearer tokens, against real servers with real
certificates made here (a CA, a server certificate for localhost and 127.0.0.1, client
certificates from that CA and from a stranger's)."""

import asyncio
import datetime
import ipaddress
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from temporec.grpc import TemporecServer
from temporec.grpc.interceptors import JsonFormatter
from temporec.grpc.security import BearerTokenAuth, load_tokens, server_credentials
from temporec.serving.config import ConfigError, ServerConfig, load_config
from temporec.serving.service import RecommenderService
from temporec_client import Event, TemporecClient, TemporecError, tls_credentials

Code = grpc.StatusCode
T0 = 1_700_000_000.0
TOKEN, SECOND_TOKEN = "t0ken-Alpha-9f3c2b7e", "t0ken-Bravo-41d8aa05"
SECRET_USER = "user-secret-5521"
HISTORY = [Event("v1", "view", T0), Event("v2", "view", T0 + 60)]


# -- a small PKI ------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    stranger_ca: Path  # another CA, and a client certificate it signed
    stranger_cert: Path
    stranger_key: Path


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def certificate(name, key, issuer=None, issuer_key=None, ca=False, names=(), usage=None) -> x509.Certificate:
    """A certificate for ``key``, signed by ``issuer_key`` (self-signed without one)."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    signer_key = issuer_key or key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(signer_key, hashes.SHA256())


def write_pem(path: Path, cert: x509.Certificate, key=None, key_path: Path | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca_key, stranger_ca_key = new_key(), new_key()
    ca = certificate("temporec test CA", ca_key, ca=True)
    stranger_ca = certificate("stranger CA", stranger_ca_key, ca=True)
    server_key, client_key, stranger_key = new_key(), new_key(), new_key()
    hosts = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = certificate("localhost", server_key, ca, ca_key, names=hosts, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client = certificate("client", client_key, ca, ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    stranger = certificate(
        "stranger", stranger_key, stranger_ca, stranger_ca_key, usage=ExtendedKeyUsageOID.CLIENT_AUTH
    )
    write_pem(root / "ca.pem", ca)
    write_pem(root / "stranger-ca.pem", stranger_ca)
    write_pem(root / "server.pem", server, server_key, root / "server.key")
    write_pem(root / "client.pem", client, client_key, root / "client.key")
    write_pem(root / "stranger.pem", stranger, stranger_key, root / "stranger.key")
    return Pki(
        root / "ca.pem",
        root / "server.pem",
        root / "server.key",
        root / "client.pem",
        root / "client.key",
        root / "stranger-ca.pem",
        root / "stranger.pem",
        root / "stranger.key",
    )


def call_error(call, *args, **kwargs) -> TemporecError:
    with pytest.raises(TemporecError) as caught:
        call(*args, **kwargs)
    return caught.value


# -- TLS --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(start_grpc_server, tiny_registry, tiny_models_dir, pki):
    with start_grpc_server(
        tiny_registry, tiny_models_dir, tls_cert=str(pki.server_cert), tls_key=str(pki.server_key)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def mtls_server(start_grpc_server, tiny_registry, tiny_models_dir, pki):
    settings = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), "tls_client_ca": str(pki.ca)}
    with start_grpc_server(tiny_registry, tiny_models_dir, **settings) as running:
        yield running


def test_a_client_that_trusts_the_ca_talks_tls(tls_server, pki):
    with TemporecClient(tls_server.target, credentials=tls_credentials(pki.ca)) as client:
        assert len(client.recommend("tiny", history=HISTORY, k=3).items) == 3
        assert client.health() == "SERVING"


def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server):
    with TemporecClient(tls_server.target, timeout=10) as client:
        assert call_error(client.health).code is Code.UNAVAILABLE


def test_a_client_that_trusts_another_ca_refuses_the_server(tls_server, pki):
    with TemporecClient(tls_server.target, credentials=tls_credentials(pki.stranger_ca), timeout=10) as client:
        assert call_error(client.health).code is Code.UNAVAILABLE


def test_mutual_tls_serves_a_client_with_a_certificate_from_the_ca(mtls_server, pki):
    credentials = tls_credentials(pki.ca, pki.client_cert, pki.client_key)
    with TemporecClient(mtls_server.target, credentials=credentials) as client:
        assert len(client.recommend("tiny", history=HISTORY, k=2).items) == 2


@pytest.mark.parametrize("certificate_from", ["nobody", "stranger"])
def test_mutual_tls_refuses_clients_without_a_certificate_from_the_ca(mtls_server, pki, certificate_from):
    pair = {"nobody": (None, None), "stranger": (pki.stranger_cert, pki.stranger_key)}[certificate_from]
    with TemporecClient(mtls_server.target, credentials=tls_credentials(pki.ca, *pair), timeout=10) as client:
        assert call_error(client.health).code is Code.UNAVAILABLE


def tls_config(pki: Pki, **fields) -> ServerConfig:
    return ServerConfig(**{"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), **fields})


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"tls_key": ""}, "tls_cert, tls_key: set both"),
        ({"tls_cert": ""}, "tls_cert, tls_key: set both"),
        ({"tls_cert": "/nonexistent/server.pem"}, "tls_cert: cannot read /nonexistent/server.pem"),
        ({"tls_key": "/nonexistent/server.key"}, "tls_key: cannot read /nonexistent/server.key"),
        ({"tls_client_ca": "/nonexistent/ca.pem"}, "tls_client_ca: cannot read /nonexistent/ca.pem"),
    ],
)
def test_tls_settings_that_cannot_work_stop_the_server_with_the_setting_named(pki, fields, message):
    with pytest.raises(ConfigError, match=message):
        server_credentials(tls_config(pki, **fields))


def test_a_key_that_does_not_match_its_certificate_is_refused(pki):
    with pytest.raises(ConfigError, match="not a PEM certificate chain and its private key"):
        server_credentials(tls_config(pki, tls_key=str(pki.client_key)))


def test_an_encrypted_key_is_refused_with_the_reason(pki, tmp_path):
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
        )
    )
    with pytest.raises(ConfigError, match="is encrypted"):
        server_credentials(tls_config(pki, tls_key=str(encrypted)))


def test_a_client_ca_that_is_not_a_certificate_is_refused(pki):
    with pytest.raises(ConfigError, match="tls_client_ca: .* is not a PEM CA certificate"):
        server_credentials(tls_config(pki, tls_client_ca=str(pki.client_key)))


def test_a_server_with_a_missing_certificate_does_not_start(tiny_registry, pki):
    config = ServerConfig(host="127.0.0.1", port=0, tls_cert="/nonexistent.pem", tls_key=str(pki.server_key))

    async def build():
        TemporecServer(RecommenderService(tiny_registry, None, device="cpu"), config)

    with pytest.raises(ConfigError, match="tls_cert: cannot read /nonexistent.pem"):
        asyncio.run(build())


def test_tls_files_in_a_config_file_are_relative_to_it(tmp_path):
    (tmp_path / "etc").mkdir()
    path = tmp_path / "etc" / "temporec.toml"
    path.write_text('tls_cert = "server.pem"\ntls_key = "/abs/server.key"\ntokens_file = "tokens"\n')
    config = load_config(path, env={})
    assert config.tls_cert == str(tmp_path / "etc" / "server.pem") and config.tls_key == "/abs/server.key"
    assert config.tokens_file == str(tmp_path / "etc" / "tokens")


def test_the_client_wants_its_certificate_and_key_together(pki):
    with pytest.raises(ValueError, match="together"):
        tls_credentials(pki.ca, certificate_chain=pki.client_cert)


# -- bearer tokens ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens"
    path.write_text(f"# the recommendation front end\n{SECOND_TOKEN}  # rotated 2024-05\n\n")
    return path


@pytest.fixture(scope="module")
def token_server(start_grpc_server, tiny_registry, tiny_models_dir, tokens_file):
    with start_grpc_server(tiny_registry, tiny_models_dir, tokens=TOKEN, tokens_file=str(tokens_file)) as running:
        yield running


@pytest.mark.parametrize("token", [TOKEN, SECOND_TOKEN])
def test_a_known_token_is_served(token_server, token):
    with TemporecClient(token_server.target, token=token) as client:
        assert len(client.recommend("tiny", history=HISTORY, k=2).items) == 2


@pytest.mark.parametrize(
    "authorization, message",
    [
        (None, "send the metadata 'authorization: Bearer <token>'"),
        ("Basic dXNlcjpwdw==", "expected exactly one value of the form 'Bearer <token>'"),
        ("Bearer", "expected exactly one value of the form 'Bearer <token>'"),
        (f"Bearer {TOKEN}x", "the bearer token is not valid for this server"),
        ("Bearer not-a-token-at-all", "the bearer token is not valid for this server"),
    ],
)
def test_a_missing_malformed_or_unknown_token_is_unauthenticated(token_server, authorization, message):
    metadata = [("authorization", authorization)] if authorization else []
    with TemporecClient(token_server.target, metadata=metadata) as client:
        error = call_error(client.recommend, "tiny", history=HISTORY)
    assert error.code is Code.UNAUTHENTICATED and message in error.details
    assert TOKEN not in error.details and "dXNlcjpwdw" not in error.details


def test_two_authorization_values_are_unauthenticated(token_server):
    metadata = [("authorization", f"Bearer {TOKEN}"), ("authorization", f"Bearer {SECOND_TOKEN}")]
    with TemporecClient(token_server.target, metadata=metadata) as client:
        assert call_error(client.list_components).code is Code.UNAUTHENTICATED


def test_the_scheme_is_case_insensitive(token_server):
    with TemporecClient(token_server.target, metadata=[("authorization", f"bearer {TOKEN}")]) as client:
        assert client.list_components().models


def test_health_and_reflection_stay_open(token_server):
    with TemporecClient(token_server.target) as client:
        assert client.health() == "SERVING"
    with grpc.insecure_channel(token_server.target) as channel:
        assert "temporec.v1.Recommender" in ProtoReflectionDescriptorDatabase(channel).get_services()


def test_tls_and_tokens_together(start_grpc_server, tiny_registry, tiny_models_dir, pki):
    settings = {"tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key), "tokens": TOKEN}
    with start_grpc_server(tiny_registry, tiny_models_dir, **settings) as running:
        with TemporecClient(running.target, credentials=tls_credentials(pki.ca), token=TOKEN) as client:
            assert client.recommend("tiny", history=HISTORY, k=1).items
        with TemporecClient(running.target, credentials=tls_credentials(pki.ca)) as client:
            assert call_error(client.recommend, "tiny", history=HISTORY).code is Code.UNAUTHENTICATED


def test_neither_tokens_nor_user_ids_reach_the_logs(token_server, caplog, access_log):
    calls = [  # (request id, token, user id, history, the status it ends with)
        ("sec-ok", TOKEN, SECRET_USER, HISTORY, "OK"),
        ("sec-traceback", TOKEN, "explode", HISTORY, "INTERNAL"),  # a rule's traceback is logged
        ("sec-refused", SECOND_TOKEN + "x", SECRET_USER, HISTORY, "UNAUTHENTICATED"),
        ("sec-unknown-item", SECOND_TOKEN, SECRET_USER, [Event("item-secret-77", "view")], "NOT_FOUND"),
    ]
    with caplog.at_level(logging.DEBUG):
        for request_id, token, user_id, history, _ in calls:
            with TemporecClient(token_server.target, token=token, metadata=[("x-request-id", request_id)]) as client:
                try:
                    client.recommend("tiny", history=history, user_id=user_id, k=2)
                except TemporecError:
                    pass
        codes = [access_log.record(request_id).access["code"] for request_id, *_ in calls]
    assert codes == [code for *_, code in calls]
    logged = caplog.text + "".join(JsonFormatter().format(r) for r in caplog.records)
    for secret in (TOKEN, SECOND_TOKEN, SECRET_USER, "item-secret-77"):
        assert secret not in logged


def test_tokens_come_from_the_environment(tmp_path):
    config = load_config(env={"TEMPOREC_TOKENS": f" {TOKEN} , {SECOND_TOKEN},"})
    assert load_tokens(config) == [TOKEN, SECOND_TOKEN]
    assert TOKEN not in repr(config)


def test_tokens_come_from_the_file_and_the_environment(tokens_file):
    config = load_config(env={"TEMPOREC_TOKENS": TOKEN, "TEMPOREC_TOKENS_FILE": str(tokens_file)})
    assert load_tokens(config) == [TOKEN, SECOND_TOKEN]


def test_no_token_means_no_check():
    assert load_tokens(ServerConfig()) == []


@pytest.mark.parametrize(
    "text, message",
    [
        ("# nothing but a comment\n", "holds no token"),
        ("good-token\nhas space inside\n", r"line 2: a token may hold only visible ASCII"),
        ("good-token\ncomma,inside\n", r"line 2: a token may hold only visible ASCII"),
    ],
)
def test_a_bad_tokens_file_names_the_line_and_not_the_token(tmp_path, text, message):
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as caught:
        load_tokens(ServerConfig(tokens_file=str(path)))
    assert "inside" not in str(caught.value)


def test_a_missing_tokens_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"tokens_file: cannot read {tmp_path / 'absent'}"):
        load_tokens(ServerConfig(tokens_file=str(tmp_path / "absent")))


def test_admin_methods_check_their_own_tokens():
    auth = BearerTokenAuth([TOKEN])
    assert auth.problem("/temporec.v1.Admin/ReloadModels", ()) is None
    assert "authorization" in auth.problem("/temporec.v1.Recommender/Recommend", ())
    assert auth.problem("/temporec.v1.Recommender/Recommend", [("authorization", f"Bearer {TOKEN}")]) is None


def test_serve_has_flags_for_tls_and_tokens_but_none_for_the_tokens_themselves(capsys):
    from temporec.cli import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = capsys.readouterr().out
    for words in ("--tls-cert", "--tls-key", "--tls-client-ca", "--tokens-file", "TEMPOREC_TOKENS", "--log-format"):
        assert words in text
    assert "--tokens " not in text and "--tokens=" not in text


def test_json_logs_are_one_object_per_line():
    record = logging.LogRecord("temporec.x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello world" and entry["level"] == "INFO" and entry["request_id"] == "-"
