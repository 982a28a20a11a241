"""The ``saksi`` command line (typer + rich).

Configuration comes from flags, then the environment (``SAKSI_HOME``,
``SAKSI_DATABASE_URL``, ``SAKSI_SERVER``), then ``saksi.toml`` in the home.
Every failure prints one line ``error: <code>: <message>`` and exits non-zero.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from eventsourcing.persistence import PersistenceError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from typer._click import exceptions as click_exceptions  # typer vendors click (pinned)
from typer.core import TyperGroup

from ledger.application import aggregate_cache_size
from ledger.audit import audit_ledger
from ledger.bundle import export_bundle, verify_bundle
from ledger.canonical import JSONRefused, strict_loads
from ledger.envelope import b64, complete_statement, key_id, raw_public_key, sign_statement
from ledger.errors import SaksiError
from ledger.home import (
    Home,
    HomeError,
    init_home,
    read_private_key,
    record_genesis,
    write_private_key,
)
from ledger.registry import GenesisRegistrar
from ledger.scenario import SimulatedClock, derived_key, kota_metro
from ledger.witness import Witness, witness_vkey


class OneLineErrors(TyperGroup):
    """Usage errors too are one line on stderr (exit 2), not a box of help."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)  # a typer.Exit's code
            sys.exit(code if isinstance(code, int) else 0)
        except click_exceptions.NoArgsIsHelpError as error:
            say(error.ctx.get_help())
            sys.exit(0)
        except click_exceptions.UsageError as error:
            command = error.ctx.command_path if error.ctx else "saksi"
            err.print(f"error: usage: {error.format_message()} (see `{command} --help`)", markup=False, soft_wrap=True)
            sys.exit(2)
        except click_exceptions.ClickException as error:
            err.print(f"error: {error.format_message()}", markup=False, soft_wrap=True)
            sys.exit(error.exit_code)
        except typer.Abort:
            err.print("error: aborted")
            sys.exit(130)


app = typer.Typer(
    cls=OneLineErrors,
    help="Saksi: a verifiable, event-sourced ledger of Pilkada commitments, pledges and logistics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err = Console(stderr=True, highlight=False)


def say(text: str, end: str = "\n") -> None:
    """Machine-readable output: plain text on stdout, never wrapped."""
    sys.stdout.write(text + end)
    sys.stdout.flush()

HomeOption = Annotated[
    Path, typer.Option("--home", envvar="SAKSI_HOME", help="Ledger home directory.")
]
DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", envvar="SAKSI_DATABASE_URL",
                 help="sqlite:///PATH or postgresql://USER@HOST/DB (default: the home's SQLite file)."),
]  # fmt: skip
ServerOption = Annotated[
    str | None,
    typer.Option("--server", envvar="SAKSI_SERVER", help="A Saksi server URL, e.g. http://127.0.0.1:8000"),
]


def fail(message: str, code: str | None = None, exit_code: int = 1) -> typer.Exit:
    line = f"error: {code}: {message}" if code else f"error: {message}"
    err.print(" ".join(line.split()), markup=False, soft_wrap=True)
    return typer.Exit(exit_code)


@contextmanager
def errors() -> Iterator[None]:
    """Turn every Saksi error into one line on stderr and exit code 1."""
    try:
        yield
    except SaksiError as error:
        raise fail(str(error), error.code) from None
    except (OSError, ValueError) as error:
        raise fail(str(error)) from None
    except PersistenceError as error:
        raise fail(f"{type(error).__name__}: {error}".splitlines()[0], "database") from None
    except Exception as error:
        # httpx (and fastapi) are imported only by the commands that talk to a server,
        # so that `saksi verify`, `sign` and the like start fast.
        httpx = sys.modules.get("httpx")
        if httpx is not None and isinstance(error, httpx.HTTPError):
            raise fail(f"{type(error).__name__}: {error}", "server-unreachable") from None
        raise


def progress_bar(*, auto_refresh: bool = True) -> Progress:
    """``auto_refresh=False``: no refresh thread (update with ``refresh=True``)."""
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err, transient=True, auto_refresh=auto_refresh,
    )  # fmt: skip


def open_home(home: Path, database_url: str | None, **options: Any) -> tuple[Home, Any]:
    loaded = Home.load(home, database_url=database_url)
    return loaded, loaded.open(**options)


@app.command()
def init(
    home: HomeOption = Path(".saksi"),
    origin: Annotated[str | None, typer.Option(help="The log's name (origin), e.g. saksi.kpu.go.id/pilkada2024.")] = None,
    genesis: Annotated[list[str], typer.Option("--genesis", help="Genesis registrar actor id (repeatable).")] = ["registrar-kpu-ri"],  # noqa: B006
    database_url: DatabaseOption = None,
) -> None:
    """Create a ledger home and record the genesis registrars.

    Prints the log's public key (note format) and one line ACTOR_ID=BASE64_KEY per
    genesis registrar: publish these out of band; verifiers are given them.

    Example: saksi init --home ./metro --origin saksi.example/metro
    """
    with errors():
        created = init_home(home, origin=origin, genesis_actors=genesis, database_url=database_url)
        ledger = created.open()
        record_genesis(created, ledger)
        say(created.log_vkey())
        for registrar in created.genesis:
            say(f"{registrar.actor}={registrar.key}")


@app.command()
def keygen(
    out_file: Annotated[Path, typer.Argument(metavar="OUT", help="Where to write the private key (PEM).")],
    actor: Annotated[str | None, typer.Option(help="Actor id, to print its witness key too.")] = None,
) -> None:
    """Generate an Ed25519 key; prints its public key (base64) and key id.

    Example: saksi keygen kpu-kota-metro.key --actor kpu-18.72
    """
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    with errors():
        if out_file.exists():
            raise HomeError(f"{out_file} exists; not overwriting a key")
        key = Ed25519PrivateKey.generate()
        write_private_key(out_file, key)
        raw = raw_public_key(key)
        say(f"public key: {b64(raw)}\nkey id: {key_id(raw)}")
        if actor:
            say(f"witness key: {witness_vkey(actor, raw)}")


def _read_json(path: Path) -> Any:
    data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    try:
        return strict_loads(data)
    except JSONRefused as error:
        raise ValueError(f"{path}: {error}") from None


@app.command()
def sign(
    statement: Annotated[Path, typer.Argument(help="Statement JSON file ('-' for stdin).")],
    key: Annotated[Path, typer.Option(help="The signer's private key (PEM).")],
) -> None:
    """Sign a statement; prints the DSSE envelope. Fills v, id and issued_at when absent.

    Example: saksi sign dispatch.json --key kpu.key > dispatch.envelope.json
    """
    with errors():
        value = _read_json(statement)
        if not isinstance(value, dict):
            raise ValueError("a statement is a JSON object")
        envelope = sign_statement(complete_statement(value), read_private_key(key))
        say(envelope.canonical().decode())


def _envelopes(path: Path) -> list[Any]:
    data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    lines = [line for line in data.splitlines() if line.strip()]
    if len(lines) == 1 or data.lstrip().startswith(b"{\n"):
        return [data]
    return lines


@app.command()
def submit(
    file: Annotated[Path, typer.Argument(help="One envelope, or JSON lines of envelopes ('-' for stdin).")],
    home: HomeOption = Path(".saksi"),
    database_url: DatabaseOption = None,
    server: ServerOption = None,
    receipts: Annotated[Path | None, typer.Option(help="Write each receipt to DIR/<index>.tlog-proof.")] = None,
) -> None:
    """Submit envelopes to a server (--server) or the local ledger; prints one JSON
    result per envelope. Exits 1 if any was refused.

    Example: saksi submit day1.jsonl --server http://127.0.0.1:8000 --receipts receipts/
    """

    def keep(result: dict[str, Any]) -> dict[str, Any]:
        if receipts is not None and "receipt" in result:
            receipts.mkdir(parents=True, exist_ok=True)
            target = receipts / f"{result['index']}.tlog-proof"
            target.write_text(result["receipt"], "utf-8")
            result = {**result, "receipt_file": str(target)}
        return result

    with errors():
        items = _envelopes(file)
        refused = 0
        with progress_bar() as bar:
            task = bar.add_task("submitting", total=len(items))
            if server:
                from api.client import Client

                with Client(server) as client:
                    for start in range(0, len(items), 500):
                        for result in client.submit_batch([json.loads(i) for i in items[start:start + 500]]):
                            refused += "type" in result
                            say(json.dumps(keep(result)))
                        bar.advance(task, len(items[start:start + 500]))
            else:
                _, ledger = open_home(home, database_url)
                for start in range(0, len(items), 500):
                    for result in ledger.submit_batch(items[start:start + 500]):
                        if isinstance(result, SaksiError):
                            from api.problems import from_saksi_error

                            refused += 1
                            line = from_saksi_error(result)
                        else:
                            line = keep(result.to_json() | {"duplicate": result.duplicate})
                        say(json.dumps(line))
                    bar.advance(task, len(items[start:start + 500]))
        if refused:
            raise typer.Exit(1)


@app.command()
def verify(
    home: HomeOption = Path(".saksi"),
    database_url: DatabaseOption = None,
    workers: Annotated[int, typer.Option(help="Threads for signature checks when no worker process runs (0: inline, always).")] = 2,
    processes: Annotated[
        int | None, typer.Option(help="Worker processes parsing entries (0: inline; default: 2 for a large log).")
    ] = None,
) -> None:
    """Audit the whole ledger database: leaves, tree, checkpoints, signatures and
    mandates (replaying the registry). Exits 0 when all holds, else 1 with the first
    bad index.

    Example: saksi verify --home ./metro
    """
    with errors():
        if processes is not None and not 0 <= processes <= 8:
            raise ValueError("--processes must be between 0 and 8")
        loaded, ledger = open_home(home, database_url, audit=True)
        # No refresh thread: the audit forks its parse workers only from a single thread.
        with progress_bar(auto_refresh=False) as bar:
            task = bar.add_task("verifying", total=max(ledger.tlog.size, 1))
            report = audit_ledger(
                ledger, log_key=loaded.log_vkey(), checkpoint_file=loaded.checkpoint_file,
                progress=lambda n: bar.update(task, completed=n, refresh=True),
                workers=workers, processes=processes,
            )  # fmt: skip
        say(
            f"ok: {report.size} entries, root {b64(report.root)}, "
            f"{report.checkpoints} checkpoints, {report.cosignatures} cosignatures"
        )


@app.command()
def export(
    out_file: Annotated[Path, typer.Argument(metavar="OUT", help="The bundle .zip to write.")],
    full: Annotated[bool, typer.Option("--full", help="Every entry.")] = False,
    subject: Annotated[str | None, typer.Option(help="A consignment, TPS/region code or actor id.")] = None,
    home: HomeOption = Path(".saksi"),
    database_url: DatabaseOption = None,
) -> None:
    """Export an audit bundle (SPEC §8), full or about one subject.

    Example: saksi export metro.zip --subject 18.72.01.1001.001
    """
    with errors():
        if full == (subject is not None):
            raise ValueError("give exactly one of --full or --subject")
        loaded, ledger = open_home(home, database_url)
        temporary = out_file.with_suffix(".partial")
        with open(temporary, "wb") as handle:
            count = export_bundle(ledger, handle, log_vkey=loaded.log_vkey(), subject=subject)
        temporary.replace(out_file)
        say(f"wrote {out_file}: {count} entries")


def _genesis(pairs: list[str]) -> list[GenesisRegistrar]:
    found = []
    for pair in pairs:
        actor, sep, key = pair.partition("=")
        if not sep or not actor or not key:
            raise ValueError(f"--genesis-key takes ACTOR=BASE64_KEY, not {pair!r}")
        found.append(GenesisRegistrar(actor, key))
    return found


@app.command("verify-bundle")
def verify_bundle_command(
    path: Annotated[Path, typer.Argument(help="A bundle directory or .zip.")],
    log_key: Annotated[str, typer.Option(help="The log's public key (note format), as published.")],
    genesis_key: Annotated[list[str], typer.Option(help="ACTOR=BASE64_KEY of a genesis registrar (repeat for each).")],
    witness_key: Annotated[list[str] | None, typer.Option(help="A witness's cosignature key (note format).")] = None,
    min_cosignatures: Annotated[int, typer.Option(help="Cosignatures required from the given witnesses.")] = 0,
) -> None:
    """Verify an audit bundle offline, from the bundle and the published keys alone.

    Example: saksi verify-bundle metro.zip --log-key 'saksi.example/metro+1a2b3c4d+AQ…'
    --genesis-key registrar-kpu-ri=BASE64
    """
    with errors():
        report = verify_bundle(
            path, log_key=log_key, genesis=_genesis(genesis_key), witness_keys=witness_key or [],
            min_cosignatures=min_cosignatures, workers=2,
        )  # fmt: skip
        say(
            f"ok: {report.kind} bundle, {report.entries} entries under a checkpoint of size "
            f"{report.size}, {report.cosignatures} cosignatures verified"
        )


@app.command("verify-receipt")
def verify_receipt_command(
    path: Annotated[Path, typer.Argument(help="A .tlog-proof receipt ('-' for stdin).")],
    log_key: Annotated[str, typer.Option(help="The log's public key (note format), as published.")],
    witness_key: Annotated[list[str] | None, typer.Option(help="A witness's cosignature key (note format).")] = None,
    min_cosignatures: Annotated[int, typer.Option(help="Cosignatures required from the given witnesses.")] = 0,
) -> None:
    """Verify a receipt offline: the checkpoint's signatures and the entry's inclusion.
    Prints the entry's index and statement digest.

    Example: saksi verify-receipt 812.tlog-proof --log-key 'saksi.demo/kota-metro-2024+…'
    """
    from ledger import notes
    from ledger.envelope import decode_b64, statement_digest

    with errors():
        text = sys.stdin.read() if str(path) == "-" else path.read_text("utf-8")
        receipt = notes.verify_receipt(text, log_key=log_key, witness_keys=witness_key or [],
                                       min_cosignatures=min_cosignatures)  # fmt: skip
        entry = strict_loads(receipt.leaf_bytes)
        digest = statement_digest(decode_b64(entry["envelope"]["payload"]))
        say(f"ok: entry {receipt.index} ({digest}) is in the log under a checkpoint of size "
            f"{notes.parse_note(receipt.checkpoint_note).checkpoint.size}")


@app.command()
def checkpoint(home: HomeOption = Path(".saksi"), database_url: DatabaseOption = None,
               server: ServerOption = None) -> None:  # fmt: skip
    """Print the latest signed checkpoint with its cosignatures.

    Example: saksi checkpoint --server http://127.0.0.1:8000
    """
    with errors():
        if server:
            from api.client import Client

            with Client(server) as client:
                say(client.checkpoint(), end="")
            return
        _, ledger = open_home(home, database_url)
        say(ledger.checkpoint(), end="")


@app.command()
def witness(
    name: Annotated[str, typer.Option(help="The witness's actor id.")],
    key: Annotated[Path, typer.Option(help="The witness's private key (PEM).")],
    log_key: Annotated[str, typer.Option(help="The log's public key (note format).")],
    state: Annotated[Path, typer.Option(help="Where this witness keeps the last checkpoint it saw.")],
    server: ServerOption = None,
    home: HomeOption = Path(".saksi"),
    database_url: DatabaseOption = None,
) -> None:
    """Cosign the log's latest checkpoint after checking it is consistent with the
    last one this witness saw; refuses loudly (exit 1) if it is not.

    Example: saksi witness --name witness-perludem --key w.key --log-key 'VKEY'
    --state w.json --server http://127.0.0.1:8000
    """
    from ledger import notes

    with errors():
        me = Witness(name, read_private_key(key), log_key, state)
        previous = me.last_seen()
        old_size = notes.parse_note(previous).checkpoint.size if previous else 0
        if server:
            from api.client import Client

            with Client(server) as client:
                note = client.checkpoint()
                new_size = notes.parse_note(note).checkpoint.size
                proof = client.consistency(old_size, new_size) if 0 < old_size < new_size else []
                line = _cosign_or_shout(me, note, proof)
                client.add_cosignature(line)
        else:
            _, ledger = open_home(home, database_url)
            note = ledger.checkpoint()
            new_size = notes.parse_note(note).checkpoint.size
            proof = ledger.tlog.consistency_proof(old_size, new_size) if 0 < old_size < new_size else []
            line = _cosign_or_shout(me, note, proof)
            ledger.add_cosignature(line)
        say(f"cosigned size {new_size}: {line.strip()}")


def _cosign_or_shout(me: Witness, note: str, proof: list[bytes]) -> str:
    from ledger.errors import InconsistentCheckpoint

    try:
        return me.cosign(note, proof)
    except InconsistentCheckpoint as error:
        err.print(f"[bold red]ALERT: NOT COSIGNING.[/] {error}")
        raise


@app.command()
def demo(
    home: HomeOption = Path(".saksi-demo"),
    fresh: Annotated[bool, typer.Option(help="Delete the home first.")] = False,
) -> None:
    """Create a home holding the Kota Metro (18.72) Pilkada 2024 scenario.

    Example: saksi demo --home ./metro-demo --fresh
    """
    with errors():
        count = build_demo(home, fresh=fresh)
        loaded = Home.load(home)
        say(f"Kota Metro demo: {count} statements in {home}")
        say(loaded.log_vkey())
        for registrar in loaded.genesis:
            say(f"{registrar.actor}={registrar.key}")


def build_demo(home: Path, *, fresh: bool) -> int:
    """The Kota Metro demo ledger in ``home`` (built once; reused afterwards)."""
    if fresh and home.exists():
        shutil.rmtree(home)
    scenario = kota_metro()
    if (home / "saksi.toml").exists():
        return Home.load(home).open().tlog.size  # type: ignore[no-any-return]
    created = init_home(
        home, origin="saksi.demo/kota-metro-2024", genesis_actors=[scenario.population.registrar.actor],
        genesis_keys={scenario.population.registrar.actor: scenario.population.registrar.key},
        log_key=derived_key(scenario.population.seed, "log"),  # the demo is the same everywhere
    )  # fmt: skip
    clock = SimulatedClock()
    ledger = created.open(clock=clock)
    with progress_bar() as bar:
        task = bar.add_task("recording the Kota Metro scenario", total=None)
        count = 0
        for item in scenario.schedule():
            clock.now = item.at
            ledger.submit(item.envelope)
            count += 1
            bar.advance(task)
    # Every demo actor's key, so a newcomer can sign and submit as any of them.
    for actor, signer in sorted(scenario.population.signers.items()):
        write_private_key(home / "demo-keys" / f"{actor}.pem", signer.key)
    # The demo's two independent witnesses cosign the final checkpoint.
    vkey = created.log_vkey()
    note = ledger.checkpoint()
    for name in ("witness-bawaslu", "witness-perludem"):
        me = Witness(name, scenario.signer(name).key, vkey, home / f"{name}.state.json")
        ledger.add_cosignature(me.cosign(note, None, now=int(clock.now.timestamp())))
    return count


@app.command()
def rebuild(
    projection: Annotated[list[str] | None, typer.Option(help="Only this projection (repeatable).")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, max=2, help="Processes: 1, or 2 (the projections split between two cores). "
        "Default: 2 for a SQLite file of at least 2,000 entries.")] = None,
    home: HomeOption = Path(".saksi"),
    database_url: DatabaseOption = None,
) -> None:
    """Rebuild projections from zero; prints one line per projection: name, log size
    reflected, digest. Two machines rebuilding the same log print the same digests.

    Example: saksi rebuild --projection readiness
    """
    from projections.runner import Projector

    with errors():
        _, ledger = open_home(home, database_url)
        projector = Projector(ledger)
        unknown = set(projection or ()) - set(projector.by_name)
        if unknown:
            raise ValueError(f"unknown projection {', '.join(sorted(unknown))} (known: {', '.join(projector.by_name)})")
        # No refresh thread: a rebuild forks its second process only from a single thread.
        with progress_bar(auto_refresh=False) as bar:
            task = bar.add_task("rebuilding", total=max(ledger.tlog.size, 1))
            statuses = projector.rebuild(
                projection, workers=workers, progress=lambda n: bar.update(task, completed=n, refresh=True)
            )
        for status in statuses:
            say(f"{status.name} {status.size} {status.digest}")


@app.command()
def serve(
    demo_mode: Annotated[bool, typer.Option("--demo", help="Serve the Kota Metro demo (built on first use).")] = False,
    home: HomeOption = Path(".saksi"),
    database_url: DatabaseOption = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (share one database).")] = 1,
) -> None:
    """Serve the HTTP API with uvicorn.

    Examples: saksi serve --demo ; SAKSI_DATABASE_URL=postgresql://… saksi serve --workers 4
    """
    import os

    import uvicorn

    from api.settings import Settings

    with errors():
        if demo_mode:
            home = home if home != Path(".saksi") else Path(".saksi-demo")
            build_demo(home, fresh=False)
        os.environ["SAKSI_HOME"] = str(home.resolve())
        if database_url:
            os.environ["SAKSI_DATABASE_URL"] = database_url
        Home.load(home, database_url=database_url)  # fail early, in one line, on a bad home
        Settings()  # and on bad SAKSI_* settings (SAKSI_FOLLOWER …)
        aggregate_cache_size()  # (SAKSI_AGGREGATE_CACHE)
        err.print(f"Saksi serving {home} on http://{host}:{port} (docs: /docs)")
        uvicorn.run("api.app:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", timeout_graceful_shutdown=5,
                    timeout_worker_healthcheck=60)  # a busy worker is not a hung one  # fmt: skip


@app.command()
def migrate(
    from_url: Annotated[str, typer.Option("--from", help="Source database URL (sqlite:///PATH).")],
    to_url: Annotated[str, typer.Option("--to", help="Target database URL (postgresql://…), empty.")],
    home: HomeOption = Path(".saksi"),
) -> None:
    """Copy a ledger to another database (events in order) and prove the copy: the
    same Merkle root and the same projection digests. Then point the home at it
    (database_url in saksi.toml, or SAKSI_DATABASE_URL).

    Example: saksi migrate --from sqlite:///.saksi/saksi.sqlite --to postgresql://postgres@127.0.0.1/saksi
    """
    from ledger.migrate import MigrationError
    from ledger.migrate import migrate as copy_ledger
    from projections.runner import Projector

    with errors():
        loaded = Home.load(home)
        with progress_bar() as bar:
            task = bar.add_task("copying events", total=None)
            source, target, report = copy_ledger(loaded, from_url, to_url, progress=lambda n: bar.update(task, completed=n))
            task = bar.add_task("rebuilding projections", total=max(report.size, 1))
            before = {s.name: s.digest for s in Projector(source).rebuild()}
            after = {s.name: s.digest for s in Projector(target).rebuild(progress=lambda n: bar.update(task, completed=n))}
        if before != after:
            differ = ", ".join(sorted(n for n in before if before[n] != after.get(n)))
            raise MigrationError(f"projection digests differ after the copy: {differ}")
        say(f"copied {report.events} events: {report.size} entries, root {b64(report.root)}, "
            f"{report.checkpoints} checkpoints, {report.cosignatures} cosignatures")
        for name, digest in after.items():
            say(f"{name} {report.size} {digest} (same on both)")


def main() -> None:
    """The console script."""
    app()
