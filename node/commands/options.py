"""What the command groups share, defined once: click's context settings, the options
that say which node to talk to and how to print, and reaching the node's API."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from node.client.http import ApiClient, ApiClientError, api_url_of_home

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    help="A member's home directory; the API address comes from its config.",
)
url_option = click.option("--url", help="The node's API base URL, e.g. http://127.0.0.1:8600.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
detail_option = click.option(
    "--detail",
    "details",
    multiple=True,
    help="KEY=VALUE, repeatable: private details, kept off the ledger (only a commitment "
    "goes on it) and sent to the --share-with members only.",
)
share_with_option = click.option(
    "--share-with",
    help="Comma-separated member names to send the details to (this member always keeps "
    "them). Default: the members with the investigator role.",
)


def resolve_url(home: Path | None, url: str | None) -> str:
    if url is not None:
        return url
    if home is None:
        raise click.UsageError("give --home DIR or --url URL")
    try:
        return api_url_of_home(home)
    except ApiClientError as exc:
        raise click.ClickException(str(exc)) from None


def call(url: str, action: Callable[[ApiClient], Any], timeout_s: float = 10.0) -> Any:
    try:
        with ApiClient(url, timeout_s=timeout_s) as client:
            return action(client)
    except ApiClientError as exc:
        raise click.ClickException(str(exc)) from None


def read_passphrase(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        text = path.read_text().rstrip("\n")
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot read the passphrase: {exc.strerror}") from None
    if not text:
        raise click.ClickException(f"{path}: the passphrase file is empty")
    return text
