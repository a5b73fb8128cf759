"""`vigil` command line: run the pipeline, run one role, produce/tail events, import banks.

Every failure the user can fix is one line on stderr (`vigil: error: ...`) and exit status 2,
never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
import pydantic

from agents import INTERNAL_TOPICS, REGISTRY
from agents.banks import BankError, import_bank
from agents.detectors.text_rules import RulesError
from agents.policy import PolicyError, load_policy
from agents.policy.summary import summarize
from models import ModelError
from streams.codec import DecodeError
from streams.signing import verify
from streams.topics import ALL_TOPICS, BY_NAME
from vigil import __version__
from vigil.app import ConfigError, build_app, dev_key, parse_agents
from vigil.broker import BrokerError, EmbeddedBroker, ensure_topics
from vigil.gc_tuning import tune_gc
from vigil.settings import Settings, load_settings

log = logging.getLogger("vigil")


def fail(message: str) -> NoReturn:
    """Print one clear line and exit 2."""
    click.echo(f"vigil: error: {message}", err=True)
    sys.exit(2)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors a user can fix into one line instead of a traceback."""
    try:
        yield
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = "VIGIL_" + str(first["loc"][0]).upper() if first.get("loc") else "settings"
        fail(f"{field}: {first['msg']}")
    except (ConfigError, BrokerError, BankError, PolicyError, ModelError, RulesError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "))


def _settings(**overrides: Any) -> Settings:
    with user_errors():
        return load_settings(**overrides)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vigil")
def main() -> None:
    """Vigil: streaming content-safety pipeline for forums."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _serve(settings: Settings, agents: list[str], *, demo: bool = False,
           one_box: bool = False) -> None:
    """Start the broker if embedded, create topics, then run the faust worker until stopped."""
    broker: EmbeddedBroker | None = None
    if settings.console_enabled is None:
        # One box serves moderators; a worker pool would run one console (and feed) per process.
        settings = settings.with_changes(console_enabled=one_box)
    with user_errors():
        if settings.broker is None:
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            broker = EmbeddedBroker(
                port=settings.embedded_broker_port, log_path=settings.data_dir / "broker.log"
            ).start()
            settings = settings.with_changes(broker=broker.url)
            click.echo(f"embedded broker (Tansu, memory only) on {broker.url}", err=True)
        try:
            asyncio.run(
                ensure_topics(
                    settings.bootstrap_servers,
                    prefix=settings.topic_prefix,
                    partitions=settings.topic_partitions,
                    replication=settings.topic_replication,
                    specs=ALL_TOPICS + tuple(
                        spec for name in agents for spec in INTERNAL_TOPICS.get(name, ())
                    ),
                )
            )
            if demo:
                from vigil import demo as demo_feed

                settings = demo_feed.prepare(settings)
            app, ctx = build_app(settings, agents)
            if demo:
                demo_feed.register(ctx, settings)
        except BaseException:
            if broker is not None:
                broker.stop()
            raise

    import faust

    from vigil.web import WebService

    web_service = WebService(settings, ctx, broker=broker)
    worker = faust.Worker(
        app, web_service, loglevel=settings.log_level, quiet=True, redirect_stdouts=False
    )
    worker.spinner = None  # its terminal escapes mangle the demo's printout and log files
    tune_gc()  # everything built so far lives as long as the process (vigil/gc_tuning.py)
    try:
        worker.execute_from_commandline()
    finally:
        if broker is not None:
            broker.stop()


@main.command()
@click.option("--demo", is_flag=True, help="Feed synthetic forum traffic with a scripted incident.")
def run(demo: bool) -> None:
    """Run every agent, HTTP ingest and /metrics on one box (embedded broker unless VIGIL_BROKER)."""
    settings = _settings(**({"allow_dev_signing_key": True} if demo else {}))
    _serve(settings, list(REGISTRY), demo=demo, one_box=True)


@main.command()
@click.option("--agents", "agent_names", required=True,
              help=f"Comma-separated roles: {', '.join(REGISTRY)}")
def worker(agent_names: str) -> None:
    """Run some roles against VIGIL_BROKER (workers with the same roles share the load)."""
    settings = _settings()
    with user_errors():
        names = parse_agents(agent_names)
        if settings.broker is None:
            raise ConfigError("`vigil worker` needs VIGIL_BROKER=kafka://host:port")
    _serve(settings, names)


def _read_lines(source: str) -> Iterator[tuple[int, bytes]]:
    stream = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
    with stream:
        for lineno, line in enumerate(stream, start=1):
            if line.strip():
                yield lineno, line.strip()


@main.command()
@click.argument("source", default="-")
def produce(source: str) -> None:
    """Send JSON-lines events (FILE or - for stdin) to their topics, routed by `type`."""
    from vigil.web import route

    settings = _settings()
    if settings.broker is None:
        fail("`vigil produce` needs VIGIL_BROKER=kafka://host:port")

    async def send_all() -> tuple[int, int]:
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
        await producer.start()
        sent = bad = 0
        try:
            futures = []
            for lineno, raw in _read_lines(source):
                try:
                    spec, event = route(raw)
                except DecodeError as exc:
                    click.echo(f"line {lineno}: {exc.reason}", err=True)
                    bad += 1
                    continue
                key = spec.key(event.data)
                futures.append(await producer.send(
                    spec.full_name(settings.topic_prefix), raw,
                    key=key.encode() if key is not None else None,
                ))
                sent += 1
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        return sent, bad

    with user_errors():
        sent, bad = asyncio.run(send_all())
    click.echo(f"sent {sent} event(s)" + (f", {bad} rejected" if bad else ""), err=True)
    if bad:
        sys.exit(1)


@main.command()
@click.argument("topic")
@click.option("--from-beginning/--from-end", default=True, show_default=True)
@click.option("-n", "--count", type=int, default=0, help="Stop after N events (0 = follow).")
@click.option("--verify", "verify_signatures", is_flag=True,
              help="Check signatures (VIGIL_SIGNING_KEY, or the demo's dev key).")
def tail(topic: str, from_beginning: bool, count: int, verify_signatures: bool) -> None:
    """Print the events of a contract TOPIC as JSON lines."""
    settings = _settings()
    if settings.broker is None:
        fail("`vigil tail` needs VIGIL_BROKER=kafka://host:port")
    spec = BY_NAME.get(topic)
    if spec is None:
        fail(f"unknown topic {topic!r}; contract topics: {', '.join(BY_NAME)}")
    keys: dict[str, bytes] = {}
    if verify_signatures:
        if settings.signing_key is not None:
            keys[settings.signing_key_id] = settings.signing_key.get_secret_value().encode()
        elif (settings.data_dir / "dev-signing-key").exists():
            keys = _DevKeys(dev_key(settings.data_dir))

    async def follow() -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(
            spec.full_name(settings.topic_prefix),
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="earliest" if from_beginning else "latest",
            enable_auto_commit=False,
        )
        await consumer.start()
        seen = 0
        try:
            async for message in consumer:
                line = message.value.decode("utf-8", "replace") if message.value else ""
                if verify_signatures:
                    ok = verify(message.value or b"", keys)
                    line = json.dumps({"signature_ok": ok, "event": json.loads(line)})
                click.echo(line)
                seen += 1
                if count and seen >= count:
                    break
        finally:
            await consumer.stop()

    with user_errors(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


class _DevKeys(dict[str, bytes]):
    """The demo's dev key under whatever `dev-…` key id the running demo chose."""

    def __init__(self, secret: bytes) -> None:
        super().__init__()
        self._secret = secret

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._secret if key.startswith("dev-") else default


@main.group()
def banks() -> None:
    """Manage hash banks (CSV files in VIGIL_BANKS_DIR, hot-reloaded)."""


@banks.command("import")
@click.argument("file", type=click.Path(path_type=Path))
def banks_import(file: Path) -> None:
    """Validate a bank CSV and copy it into the banks folder (agents reload it live)."""
    settings = _settings()
    with user_errors():
        rows = import_bank(file, settings.banks_path)
    click.echo(f"imported {rows} hash(es) from {file.name} into {settings.banks_path}")


@banks.command("tune")
@click.argument("images", required=False, type=click.Path(exists=True, file_okay=False,
                                                           path_type=Path))
@click.option("--precision", default=0.99, show_default=True, type=click.FloatRange(0, 1),
              help="Target precision (true pairs / all pairs within the threshold).")
@click.option("--synthetic", default=0, type=click.IntRange(0, 1000),
              help="Also use this many Pillow-drawn images (no folder needed).")
@click.option("--hash", "schemes", multiple=True,
              help="Hash types to measure (default: all; pdq, pdq+trim, pdq-centre, phash, "
                   "dhash).")
@click.option("--transform", "transforms", multiple=True,
              help="Transforms to apply (default: all).")
def banks_tune(images: Path | None, precision: float, synthetic: int,
               schemes: tuple[str, ...], transforms: tuple[str, ...]) -> None:
    """Recall at a target precision per hash type and transform, for a folder of IMAGES:
    the evidence for per-bank thresholds (docs/hashing.md)."""
    from PIL import Image

    from agents.imaging import ImageRejected, decode
    from agents.tune import SCHEMES, TRANSFORMS, format_report, synthetic_images, tune

    with user_errors():
        unknown = [n for n in schemes if n not in SCHEMES] + [
            n for n in transforms if n not in TRANSFORMS]
        if unknown:
            fail(f"unknown hash type or transform: {', '.join(unknown)} (hash types: "
                 f"{', '.join(SCHEMES)}; transforms: {', '.join(TRANSFORMS)})")
        originals: list[Image.Image] = synthetic_images(synthetic) if synthetic else []
        for path in sorted(images.iterdir()) if images else []:
            if not path.is_file():
                continue
            try:
                originals.append(decode(path.read_bytes()).frames[0])
            except (ImageRejected, OSError) as exc:
                click.echo(f"skipped {path.name}: {exc}", err=True)
        if len(originals) < 2:
            fail("need at least 2 images (a folder of images, or --synthetic N)")
        rows = tune(originals, precision=precision, schemes=schemes or tuple(SCHEMES),
                    transforms=transforms or tuple(TRANSFORMS))
    click.echo(format_report(rows, precision))


@main.group()
def policy() -> None:
    """Check policy files (VIGIL_POLICY; hot-reloaded by decide and notify)."""


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def policy_check(file: Path) -> None:
    """Validate a policy FILE: prints its version, or the error with its line."""
    with user_errors():
        loaded = load_policy(file)
    click.echo(f"ok: {file} policy_version={loaded.version}")
    for line in summarize(loaded):
        click.echo(f"  {line}")


@main.group()
def console() -> None:
    """Manage moderator console accounts (docs/console.md)."""


@console.command("add-user")
@click.argument("name")
@click.option("--role", type=click.Choice(["volunteer", "moderator", "admin"]),
              default="moderator", show_default=True)
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of stdin (scripts); else prompt.")
def console_add_user(name: str, role: str, password_stdin: bool) -> None:
    """Create or update console user NAME (password hashed with scrypt, never echoed)."""
    from vigil.console.auth import AuthError, Users

    settings = _settings()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 10:
        fail("the password needs at least 10 characters")
    path = settings.console_users_file or settings.data_dir / "console-users.json"
    try:
        Users(path).add(name, role, password)
    except AuthError as exc:
        fail(str(exc))
    click.echo(f"console user {name} ({role}) saved in {path}")


if __name__ == "__main__":  # pragma: no cover
    main()
