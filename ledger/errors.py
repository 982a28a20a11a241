"""Every way Saksi says "no", as one exception tree with stable codes.

Each refusal carries a ``code`` that never changes once published; the HTTP
API maps it to the problem type ``https://saksi.id/problems/<code>`` in one
table, the CLI prints ``code: message`` on one line.

    SaksiError
    ├── Refusal                      a submitted statement is refused; nothing is recorded
    │   ├── MalformedEnvelope        malformed-envelope
    │   │   └── EnvelopeTooLarge     body-too-large (an envelope past 64 KiB, alone or in a batch)
    │   ├── NotCanonical             not-canonical
    │   ├── MalformedStatement       malformed-statement
    │   ├── MalformedBody            malformed-body
    │   ├── UnknownKey               unknown-key
    │   ├── UnknownActor             unknown-actor
    │   ├── KeyNotOfActor            key-not-of-actor
    │   ├── BadSignature             bad-signature
    │   ├── KeyRevoked               key-revoked
    │   ├── NoMandate                no-mandate
    │   ├── OutsideJurisdiction      outside-jurisdiction
    │   ├── GenesisViolation         genesis-violation
    │   ├── DuplicateStatementId     duplicate-statement-id
    │   ├── InvariantBroken          invariant-broken (names which invariant)
    │   ├── ConcurrentUpdate         concurrent-update
    │   ├── ReadOnly                 read-only
    │   └── BadCosignature           bad-cosignature
    ├── VerificationError            an integrity check failed (proofs, notes, audit)
    │   ├── ProofError               proof-invalid
    │   ├── NoteError                note-invalid
    │   ├── InconsistentCheckpoint   checkpoint-inconsistent
    │   └── AuditFailure             audit-failed (carries the first bad index)
    └── NotFound                     not-found
"""

from __future__ import annotations


class SaksiError(Exception):
    """Base of every Saksi error. ``code`` is stable; ``str(e)`` is for people."""

    code = "saksi-error"
    status = 400

    def __init__(self, message: str, **detail: object) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class Refusal(SaksiError):
    """A statement (or cosignature) was refused and nothing was recorded."""

    code = "refused"


class MalformedEnvelope(Refusal):
    code = "malformed-envelope"
    status = 422


class EnvelopeTooLarge(MalformedEnvelope):
    """One envelope is larger than the per-envelope limit; the same problem type
    as a request body that is too large, since for a single POST it is one."""

    code = "body-too-large"
    status = 413


class NotCanonical(Refusal):
    code = "not-canonical"
    status = 422


class MalformedStatement(Refusal):
    code = "malformed-statement"
    status = 422


class MalformedBody(Refusal):
    code = "malformed-body"
    status = 422


class UnknownKey(Refusal):
    code = "unknown-key"
    status = 403


class UnknownActor(Refusal):
    code = "unknown-actor"
    status = 403


class KeyNotOfActor(Refusal):
    code = "key-not-of-actor"
    status = 403


class BadSignature(Refusal):
    code = "bad-signature"
    status = 403


class KeyRevoked(Refusal):
    code = "key-revoked"
    status = 403


class NoMandate(Refusal):
    code = "no-mandate"
    status = 403


class OutsideJurisdiction(Refusal):
    code = "outside-jurisdiction"
    status = 403


class GenesisViolation(Refusal):
    code = "genesis-violation"
    status = 403


class DuplicateStatementId(Refusal):
    code = "duplicate-statement-id"
    status = 409


class InvariantBroken(Refusal):
    """A domain invariant would be broken; ``invariant`` names which one."""

    code = "invariant-broken"
    status = 409

    def __init__(self, invariant: str, message: str, **detail: object) -> None:
        super().__init__(f"{invariant}: {message}", invariant=invariant, **detail)
        self.invariant = invariant


class ConcurrentUpdate(Refusal):
    code = "concurrent-update"
    status = 409


class ReadOnly(Refusal):
    """This process cannot record (it holds no log key)."""

    code = "read-only"
    status = 503


class BadCosignature(Refusal):
    code = "bad-cosignature"
    status = 422


class VerificationError(SaksiError):
    """An integrity check failed. Carries what was expected and what was found."""

    code = "verification-failed"
    status = 422


class ProofError(VerificationError):
    code = "proof-invalid"


class NoteError(VerificationError):
    code = "note-invalid"


class InconsistentCheckpoint(VerificationError):
    code = "checkpoint-inconsistent"
    status = 409


class AuditFailure(VerificationError):
    """The audit found a bad entry; ``index`` is the first bad log index (or None)."""

    code = "audit-failed"

    def __init__(self, index: int | None, message: str, **detail: object) -> None:
        where = f"index {index}: " if index is not None else ""
        super().__init__(where + message, index=index, **detail)
        self.index = index


class NotFound(SaksiError):
    code = "not-found"
    status = 404
