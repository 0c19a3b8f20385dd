"""``crosstrace psi`` (intersect a set with another member's, under a case),
``crosstrace psi-answer-set`` (the set this node answers with) and ``crosstrace
psi-runs`` (the runs at a node, with progress bars: the answering side's view)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click

from node.client.http import ApiClientError
from node.client.psi import ENDED, PsiClient, problem_text
from node.commands.options import CONTEXT, home_option, json_option, resolve_url, url_option
from node.psi.inputs import ENTITY_TYPES
from node.setup.keys import atomic_write

BAR_WIDTH = 28
BAR_FROM = 5_000  # smaller runs end before a bar says anything

type_option = click.option(
    "--type",
    "entity_type",
    type=click.Choice(ENTITY_TYPES),
    required=True,
    help="What the identifiers are; each line is normalised as for pseudonyms.",
)
input_option = click.option(
    "--input",
    "input_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="One identifier a line (blank lines are skipped).",
)
dedupe_option = click.option(
    "--dedupe",
    is_flag=True,
    help="Keep the first of lines that are the same identifier once normalised "
    "(by default such a set is refused).",
)


def progress_line(run: dict[str, Any], width: int = BAR_WIDTH) -> str:
    """One run as a bar and counts, e.g. for a terminal that redraws it."""
    p = run["progress"]
    total = p["total"]
    share = p["done"] / total if total else 0.0
    filled = int(share * width)
    bar = "#" * filled + "." * (width - filled)
    peer_size = run["peer_size"] or 0
    return (
        f"[{bar}] {share:4.0%}  ours sent {p['own_sent']:,}/{run['own_size']:,}  "
        f"theirs tagged {p['peer_tagged']:,}/{peer_size:,}  "
        f"tags back {p['tags_received']:,}/{run['own_size']:,}"
    )


class Bar:
    """A progress line on a terminal, redrawn in place; silent elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self.drawn = False

    def draw(self, run: dict[str, Any]) -> None:
        if not self.live or (run["own_size"] + (run["peer_size"] or 0)) < BAR_FROM:
            return
        self.out.write("\r" + progress_line(run) + f"  {run['state']}\x1b[K")
        self.out.flush()
        self.drawn = True

    def end(self) -> None:
        if self.drawn:
            self.out.write("\n")
            self.out.flush()


@click.command(context_settings=CONTEXT)
@click.option("--case", "case_id", required=True, help="The active case naming both members.")
@click.option("--with", "peer", required=True, help="The other member's name.")
@input_option
@type_option
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the intersection here (mode 0600) instead of printing it.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@dedupe_option
@click.option(
    "--timeout", default=3600.0, show_default=True, help="Seconds to wait for the run to end."
)
@home_option
@url_option
def psi(
    case_id: str,
    peer: str,
    input_file: Path,
    entity_type: str,
    out: Path | None,
    force: bool,
    dedupe: bool,
    timeout: float,
    home: Path | None,
    url: str | None,
) -> None:
    """Intersect the identifiers in --input with another member's set, privately.

    Both nodes learn the identifiers they have in common and the size of the other's
    set, nothing else (Diffie-Hellman PSI over the Ed25519 group). The run needs an
    active case that both members opened or approved; the other member's node answers
    by itself if its policy allows, and both record the run on the ledger (case, set
    sizes, result size; never the identifiers). The intersection is printed, or written
    to --out, in the order of --input, normalised.

    \b
    Example:
      crosstrace psi --home ./consortium/node0 --case HZ-2026-0193 --with bank-1 \\
          --input flagged-numbers.txt --type phone --out common.txt
    """
    if out is not None and out.exists() and not force:
        raise click.ClickException(f"{out} exists; add --force to overwrite it")
    base_url = resolve_url(home, url)
    data = input_file.read_bytes()
    bar = Bar(sys.stderr)
    try:
        with PsiClient(base_url) as client:
            started = client.start(case_id, peer, entity_type, data, dedupe=dedupe)
            run_id = started["run_id"]
            checked = started["input"]
            click.echo(
                f"psi run {run_id[:8]} with {peer}: {checked['identifiers']:,} identifiers "
                f"checked in {checked['seconds']:.1f} s; blinding and exchanging",
                err=True,
            )
            run = client.wait(run_id, timeout_s=timeout, on_progress=bar.draw)
    except ApiClientError as exc:
        bar.end()
        raise click.ClickException(f"{base_url}: {problem_text(exc)}") from None
    bar.end()
    if run["state"] != "completed":
        raise click.ClickException(f"psi run {run_id[:8]} {run['state']}: {run['message']}")
    found: list[str] = run["intersection"]
    text = "".join(f"{value}\n" for value in found)
    if out is not None:
        atomic_write(out, text.encode(), mode=0o600)
    else:
        click.echo(text, nl=False)
    record = run["record"] or {}
    click.echo(
        f"psi run {run_id[:8]} with {peer} under case {case_id}: {len(found):,} in common "
        f"(ours {run['own_size']:,}, theirs {run['peer_size']:,}); recorded at height "
        f"{record.get('height')} (tx {str(record.get('tx_id'))[:16]}); "
        f"{run['timings_s'].get('recorded', 0):.1f} s"
        + (f"; written to {out}" if out is not None else ""),
        err=True,
    )


@click.command("psi-answer-set", context_settings=CONTEXT)
@input_option
@type_option
@dedupe_option
@home_option
@url_option
def psi_answer_set(
    input_file: Path, entity_type: str, dedupe: bool, home: Path | None, url: str | None
) -> None:
    """Give this node the set it answers other members' PSI runs with (one entity type).

    It replaces the set from [psi.answer_sets] in config.toml until the node restarts.
    The node answers only when [psi] answer = true, and only under an active case
    naming both members.

    \b
    Example:
      crosstrace psi-answer-set --home ./consortium/node1 --type phone --input flagged.txt
    """
    base_url = resolve_url(home, url)
    try:
        with PsiClient(base_url) as client:
            answer = client.set_answer_set(entity_type, input_file.read_bytes(), dedupe=dedupe)
    except ApiClientError as exc:
        raise click.ClickException(f"{base_url}: {problem_text(exc)}") from None
    click.echo(f"{answer['entity_type']}: {answer['size']:,} identifiers loaded")


@click.command("psi-runs", context_settings=CONTEXT)
@click.option("--watch", is_flag=True, help="Redraw every second while runs are going on.")
@json_option
@home_option
@url_option
def psi_runs(watch: bool, as_json: bool, home: Path | None, url: str | None) -> None:
    """The PSI runs a node has going on or recently ended, asked or answered, with their
    progress: on the answering member's side, this is where a run shows.

    \b
    Example:
      crosstrace psi-runs --home ./consortium/node1 --watch
    """
    base_url = resolve_url(home, url)
    drawn = 0
    try:
        with PsiClient(base_url) as client:
            while True:
                answer = client.runs()
                if as_json:
                    click.echo(json.dumps(answer, indent=2))
                    return
                lines = run_lines(answer)
                if drawn and sys.stdout.isatty():
                    click.echo(f"\x1b[{drawn}F\x1b[J", nl=False)
                click.echo("\n".join(lines))
                drawn = len(lines)
                if not watch or all(r["state"] in ENDED for r in answer["runs"]):
                    return
                time.sleep(1.0)
    except ApiClientError as exc:
        raise click.ClickException(f"{base_url}: {problem_text(exc)}") from None


def run_lines(answer: dict[str, Any]) -> list[str]:
    sets = ", ".join(f"{t} {s['size']:,}" for t, s in answer["answer_sets"].items()) or "none"
    lines = [f"answering: {'yes' if answer['answering'] else 'no'}; answer sets: {sets}"]
    if not answer["runs"]:
        return [*lines, "no runs"]
    for run in answer["runs"]:
        head = (
            f"{run['run_id'][:8]} {run['role']:<9} {run['peer']:<12} case {run['case_id']} "
            f"{run['entity_type']} {run['state']}"
        )
        if run["state"] in ENDED:
            result = f"{run['result_size']:,} in common" if run["result_size"] is not None else ""
            why = run["outcome"] if run["state"] != "completed" else ""
            lines.append(f"{head} {result or why}: {run['message']}".rstrip(": "))
        else:
            lines.append(f"{head}\n  {progress_line(run)}")
    return lines
