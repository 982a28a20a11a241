"""A ledger home (``SAKSI_HOME``, default ``./.saksi``): configuration, keys, the
SQLite file, and the last signed checkpoint kept outside the database.

    saksi.toml          origin, genesis registrars (id and public key), database_url
    log.key             the log's Ed25519 private key (PKCS#8 PEM, mode 0600)
    genesis/<id>.key    the genesis registrars' private keys, when created here
    saksi.sqlite        the database (unless database_url points elsewhere)
    last-checkpoint     the last checkpoint the log signed (back this up too)
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)

from ledger.application import Ledger
from ledger.envelope import b64, raw_public_key
from ledger.errors import SaksiError
from ledger.notes import Checkpoint, format_vkey
from ledger.regions import CODE_LIST_VERSION
from ledger.registry import GenesisRegistrar
from ledger.scenario import Signer, mandate, registration

CONFIG = "saksi.toml"


class HomeError(SaksiError):
    code = "home-invalid"


def default_home() -> Path:
    return Path(os.environ.get("SAKSI_HOME", ".saksi"))


def write_private_key(path: Path, key: Ed25519PrivateKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def read_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as error:
        raise HomeError(f"cannot read the key {path}: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise HomeError(f"{path} is not an Ed25519 key")
    return key


@dataclass(frozen=True)
class Home:
    """A parsed ledger home."""

    path: Path
    origin: str
    genesis: tuple[GenesisRegistrar, ...]
    database_url: str

    @classmethod
    def load(cls, path: Path, *, database_url: str | None = None) -> Home:
        """Read ``saksi.toml``; ``database_url`` (or ``SAKSI_DATABASE_URL``) overrides it."""
        config_file = path / CONFIG
        if not config_file.exists():
            raise HomeError(f"no ledger at {path} (run `saksi init` first)")
        try:
            config = tomllib.loads(config_file.read_text("utf-8"))
            genesis = tuple(GenesisRegistrar(g["actor"], g["key"]) for g in config["genesis"])
            origin = config["origin"]
        except (tomllib.TOMLDecodeError, KeyError, TypeError) as error:
            raise HomeError(f"{config_file} is not a valid Saksi configuration: {error}") from None
        url = (
            database_url
            or os.environ.get("SAKSI_DATABASE_URL")
            or config.get("database_url")
            or f"sqlite:///{(path / 'saksi.sqlite').resolve()}"
        )
        return cls(path, origin, genesis, url)

    @property
    def log_key_file(self) -> Path:
        return self.path / "log.key"

    @property
    def checkpoint_file(self) -> Path:
        return self.path / "last-checkpoint"

    def log_key(self) -> Ed25519PrivateKey:
        return read_private_key(self.log_key_file)

    def log_vkey(self) -> str:
        return format_vkey(self.origin, raw_public_key(self.log_key()))

    def open(self, *, clock: Callable[[], datetime] | None = None, audit: bool = False) -> Ledger:
        """Open the ledger. Raises InconsistentCheckpoint when the database is older
        than the last checkpoint this log signed (unless ``audit``: then nothing is
        checked or written at start, and the process cannot sign)."""
        return Ledger(
            database_url=self.database_url, origin=self.origin, genesis=self.genesis,
            log_key=None if audit else self.log_key(),
            checkpoint_file=self.checkpoint_file, clock=clock, audit=audit,
        )  # fmt: skip


def init_home(
    path: Path,
    *,
    origin: str | None = None,
    genesis_actors: Sequence[str] = ("registrar-kpu-ri",),
    genesis_keys: dict[str, Ed25519PrivateKey] | None = None,
    database_url: str | None = None,
    log_key: Ed25519PrivateKey | None = None,
) -> Home:
    """Create a ledger home: the log key and the genesis registrars' keys (generated
    unless given), the configuration. The caller records the genesis registrations
    (``Ledger.submit``), signed with the genesis keys. Raises HomeError if a ledger
    already lives at ``path``."""
    if (path / CONFIG).exists():
        raise HomeError(f"a ledger already lives at {path}")
    origin = origin or f"saksi.local/{secrets.token_hex(4)}"
    try:
        Checkpoint(origin, 0, bytes(32))  # the origin is the log's key name (SPEC §5)
    except ValueError:
        raise HomeError(f"the origin {origin!r} is not a valid log name (no spaces, no '+')") from None
    path.mkdir(parents=True, exist_ok=True)
    write_private_key(path / "log.key", log_key or Ed25519PrivateKey.generate())
    genesis = []
    for actor in genesis_actors:
        key = (genesis_keys or {}).get(actor) or Ed25519PrivateKey.generate()
        write_private_key(path / "genesis" / f"{actor}.key", key)
        genesis.append(GenesisRegistrar(actor, b64(raw_public_key(key))))
    lines = [
        "# Saksi ledger configuration (see README). Publish the log key and the",
        "# genesis keys out of band: verifiers are given them, never a bundle's copy.",
        f'origin = "{origin}"',
        f'region_codes = "{CODE_LIST_VERSION}"',
    ]
    if database_url:
        lines.append(f'database_url = "{database_url}"')
    for registrar in genesis:
        lines += ["", "[[genesis]]", f'actor = "{registrar.actor}"', f'key = "{registrar.key}"']
    (path / CONFIG).write_text("\n".join(lines) + "\n", "utf-8")
    return Home.load(path, database_url=database_url)


def record_genesis(home: Home, ledger: Ledger) -> list[int]:
    """Record the genesis registrars' self-signed registrations (SPEC §1.1), signed
    with their keys in ``genesis/``; returns their log indexes. Requires an empty log."""
    indexes = []
    for registrar in home.genesis:
        signer = Signer(registrar.actor, read_private_key(home.path / "genesis" / f"{registrar.actor}.key"))
        envelope = signer.sign(
            "actor.registered", registrar.actor,
            registration(registrar.actor, f"{registrar.actor} (genesis registrar)", [registrar.key],
                         [mandate("registrar", "ID")]),
        )  # fmt: skip
        indexes.append(ledger.submit(envelope).index)
    return indexes
