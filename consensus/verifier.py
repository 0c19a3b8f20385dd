"""Signature checks with memory: each distinct signed message is verified once.

Duplicates (retransmissions, quotes inside VIEW-CHANGE, NEW-VIEW and certificates)
hit the cache. The key includes the exact signed body, so a valid signature can never
vouch for other content.
"""

from __future__ import annotations

from collections import OrderedDict

from consensus.blocks import COMMIT_KIND, Certificate, CertificateError, commit_body
from consensus.crypto import DIGEST_SIZE, SIGNATURE_SIZE, hash_bytes
from consensus.membership import Membership
from consensus.messages import SignedMessage

_LARGE_BODY = 256


class Verifier:
    def __init__(self, membership: Membership, capacity: int = 1 << 16) -> None:
        self.membership = membership
        self.capacity = capacity
        self._verified: OrderedDict[tuple[int, str, bytes, bytes], None] = OrderedDict()
        self.verifications = 0

    def _check(self, member: int, kind: str, body: bytes, signature: bytes) -> bool:
        if not self.membership.is_member(member) or len(signature) != SIGNATURE_SIZE:
            return False
        key_body = body if len(body) <= _LARGE_BODY else hash_bytes("cache", body)
        key = (member, kind, key_body, signature)
        if key in self._verified:
            self._verified.move_to_end(key)
            return True
        self.verifications += 1
        if not self.membership.verify(member, kind, body, signature):
            return False
        self._verified[key] = None
        if len(self._verified) > self.capacity:
            self._verified.popitem(last=False)
        return True

    def message(self, message: SignedMessage) -> bool:
        return self._check(message.sender, message.KIND, message.body(), message.signature)

    def certificate(self, cert: Certificate) -> None:
        """Like ``blocks.check_certificate``, through the cache."""
        if len(cert.digest) != DIGEST_SIZE:
            raise CertificateError(f"digest must be {DIGEST_SIZE} bytes")
        body = commit_body(cert.view, cert.height, cert.digest)
        seen: set[int] = set()
        for sig in cert.signatures:
            if sig.member in seen:
                raise CertificateError(f"member {sig.member} signed twice")
            if not self._check(sig.member, COMMIT_KIND, body, sig.signature):
                raise CertificateError(f"signature of member {sig.member} does not verify")
            seen.add(sig.member)
        if len(seen) < self.membership.quorum:
            raise CertificateError(
                f"{len(seen)} commit signatures, a quorum of {self.membership.quorum} is needed"
            )
