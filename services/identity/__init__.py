"""Identity: users and their credentials, OAuth 2.0-style token grants, signing keys, revocation and the audit log.

Rooms: ``domain`` (account rules: e-mail, passwords, lockout, refresh-token families),
``oauth`` (grant errors, scopes, access-token claims), ``ratelimit`` (sign-in token
buckets), ``filters`` (list filters and page tokens), ``signing`` (key material, JWK,
thumbprints, encryption at rest), ``passwords`` (argon2id), ``models``/``store*``
(tables and queries), ``keyring`` (the signing keys in memory), ``directory`` (team_hub
and developer_api behind one port), ``grants``/``accounts``/``security`` (use cases),
``feed`` (live revocation fan-out) and ``servicer`` (proto in, proto out).
"""
