"""Wiring: build identity's state from the service context and register its servicer."""

from __future__ import annotations

import grpc

from mesh.config import ConfigError, Settings
from runtime.handlers import ServiceContext
from services.identity import signing
from services.identity.app import Identity
from services.identity.directory import MeshDirectory
from services.identity.keyring import Keyring
from services.identity.servicer import IdentityServicer
from vocelio.identity.v1 import identity_service_pb2_grpc


def build_keyring(settings: Settings) -> Keyring:
    """The keyring with the configured key-encryption key and key file, checked now so bad values stop start-up.

    Raises:
        ConfigError: the key-encryption key or the key file cannot be used.

    """
    try:
        key_encryption_key = signing.parse_key_encryption_key(settings.mesh_key_encryption_key())
    except signing.KeyMaterialError as error:
        raise ConfigError("VOCELIO_KEY_ENCRYPTION_KEY", str(error)) from None
    file_key = None
    if settings.jwt_signing_key_file is not None:
        try:
            file_key = signing.from_pem(settings.jwt_signing_key_file.read_bytes())
        except (OSError, signing.KeyMaterialError) as error:
            raise ConfigError("VOCELIO_JWT_SIGNING_KEY_FILE", str(error)) from None
    return Keyring(key_encryption_key, file_key)


def register(server: grpc.aio.Server, context: ServiceContext) -> None:
    """Add the identity servicer to the server."""
    identity: Identity | None = None

    async def own_token() -> str:
        assert identity is not None
        return await identity.own_token()

    identity = Identity(
        settings=context.settings,
        database=context.database,
        registry=context.registry,
        keyring=build_keyring(context.settings),
        directory=MeshDirectory(context.clients, own_token),
        clock=context.clock,
        page_tokens=context.page_tokens,
        idempotency=context.idempotency,
    )
    identity_service_pb2_grpc.add_IdentityServiceServicer_to_server(IdentityServicer(identity), server)  # type: ignore[no-untyped-call]
