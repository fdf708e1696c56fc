"""Per-stack SSH keys: one operator key (authorized on every instance) and one host key (pinned).

Generating the host key ourselves and installing it at boot (cloud-init `ssh_keys`, or the private
sshd of the local provider) lets the operator verify the host before the first connection: no
trust-on-first-use, never paramiko's AutoAddPolicy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KeyPair:
    private_pem: str   # OpenSSH private key format
    public_line: str   # "ssh-ed25519 AAAA… comment"


def generate_ed25519(comment: str) -> KeyPair:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return KeyPair(private_pem=private, public_line=f"{public} {comment}")
