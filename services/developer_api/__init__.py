"""Developer API: the API keys organisations use to call Vocelio, their verification and their usage.

A key's secret (``vk_live_…`` / ``vk_test_…``) is shown once and stored only as its
SHA-256 hash with a visible prefix; its scopes never exceed its creator's permissions;
revocation reaches every service through identity's revocation log. Key lifecycle events
go to identity's security audit log.
"""
