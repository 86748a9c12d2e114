"""`kredete training export|consent`: training data from conversations that carry feedback."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated
from uuid import UUID

import typer

from kredete.commands.common import fail, with_credit_store

training_app = typer.Typer(no_args_is_help=True, help="Training data from scored conversations (redacted, "
                                                      "consent-checked).")


def register(app: typer.Typer) -> None:
    app.add_typer(training_app, name="training")


@training_app.command("export")
def training_export(
    since: Annotated[str, typer.Option(help="Conversations scored since: an ISO time or a duration (24h, 30d).")],
    min_score: Annotated[float, typer.Option("--min-score", help="The conversation's lowest score since then must "
                                                                 "be at least this (-1 .. 5).")] = 4.0,
    dataset: Annotated[str | None, typer.Option(help="Dataset name (default: from the filters; an export of the "
                                                     "same dataset replaces it).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the dataset card as JSON.")] = False,
) -> None:
    """Write the examples to `training_data` and, as the ML pipeline's S3 principal, examples.jsonl with its
    dataset card to the ML-artifacts bucket (`training/<dataset>/`). Opted-out and erased users are left out."""
    import re

    from kredete.commands.traces import _since

    if not -1 <= min_score <= 5:
        fail("--min-score must be from -1 to 5")
    if dataset is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}", dataset):
        fail("--dataset: letters, digits, '.', '_' and '-' (at most 100)")
    at = _since(since)
    card = asyncio.run(_export(at, min_score, dataset))
    if as_json:
        print(json.dumps(card.as_dict(), indent=2))
        return
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(card.markdown()))
    Console().print(f"s3://{card.location['bucket']}/{card.location['examples']} (+ card.json, card.md); "
                    f"{card.examples} examples in training_data", highlight=False)


async def _export(since, min_score: float, dataset: str | None):
    from config.settings import resolve
    from kredete.training.export import export
    from stores.errors import StoreError
    from stores.mongo.traces import TraceRepository
    from stores.mongo.training import TrainingRepository
    from stores.objects.buckets import bucket_of
    from stores.objects.principals import objects_for
    from stores.postgres.users import UserRepository
    from stores.registry import connect

    s = resolve()
    try:
        stores = await connect(("postgres", "mongo"), settings=s)
    except StoreError as exc:
        fail(str(exc))
    objects = objects_for(s, s.training_s3_principal)
    try:
        return await export(TraceRepository(stores.mongo), TrainingRepository(stores.mongo),
                            UserRepository(stores.postgres), objects,
                            bucket=bucket_of("ml-artifacts", s.s3_bucket_prefix), since=since, min_score=min_score,
                            dataset=dataset)
    except StoreError as exc:
        fail(f"{exc} (is the ML-artifacts bucket set up? `kredete s3 setup`)")
    finally:
        await objects.close()
        await stores.close()


@training_app.command("consent")
def training_consent(
    user_id: Annotated[str, typer.Argument(help="The customer's user id.")],
    opt_out: Annotated[bool, typer.Option("--opt-out/--opt-in", help="Leave the customer's conversations out of "
                                                                     "training data, or include them again.")],
) -> None:
    """Record a customer's choice about training use (the export reads it)."""
    try:
        uid = str(UUID(user_id))
    except ValueError:
        fail("not a user id")

    from stores.mongo.training import TrainingRepository

    changed = asyncio.run(with_credit_store(lambda store: TrainingRepository(store).set_opted_out(uid, opt_out)))
    state = "opted out of" if opt_out else "included in"
    print(f"{uid}: {state} training data{'' if changed else ' (unchanged)'}")
