"""``lensflow models ...``: fetch model files named in the manifest, list them, hash files.

Other modules add commands to the same sub-app by decorating :data:`app` (for example
``lensflow.cli.models_export`` with ``@app.command("export")``) and can reuse the shared
options (:data:`ManifestOption`, :data:`CacheDirOption`) and helpers (:func:`open_manifest`,
:func:`resolve_cache_dir`, :func:`fail`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from lensflow.cli.defaults import manifest_or_default, shipped_help
from lensflow.models.export.fetch import (
    cache_path,
    cached_path,
    default_cache_dir,
    fetch_model,
    sha256_file,
)
from lensflow.models.export.manifest import Manifest, ModelEntry, load_manifest
from lensflow.shared.errors import ConfigError, LensflowError

app = typer.Typer(
    help="Model files: fetch them from the manifest (sha256-verified), list them, hash them.",
    no_args_is_help=True,
)
out = Console()
err_console = Console(stderr=True)

DEFAULT_MANIFEST = None
"""``--manifest`` left out: the shipped manifest (see :mod:`lensflow.cli.defaults`)."""

ManifestOption = Annotated[
    Path | None,
    typer.Option(
        "--manifest",
        "-m",
        help=shipped_help("Model manifest YAML", "models.yaml"),
        envvar="LENSFLOW_MODEL_MANIFEST",
    ),
]
CacheDirOption = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help="Model cache folder (default: $LENSFLOW_MODEL_CACHE, else $LENSFLOW_HOME/models, "
        "else the user's cache folder).",
        show_default=False,
    ),
]


def fail(message: str) -> NoReturn:
    """Print ``error: MESSAGE`` on stderr as one line and exit with status 1."""
    say_error(message)
    raise typer.Exit(1)


def say_error(message: str) -> None:
    """Print ``error: MESSAGE`` on stderr as one line (no markup, no wrapping)."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)


def open_manifest(path: Path) -> Manifest:
    """Load the manifest; on errors print FILE:LINE: message for each and exit 1."""
    try:
        return load_manifest(path)
    except ConfigError as err:
        for issue in err.issues:
            where = str(issue.location) if issue.location else str(path)
            what = f"{issue.field}: " if issue.field else ""
            err_console.print(
                f"{where}: {what}{issue.message}", markup=False, highlight=False, soft_wrap=True
            )
        raise typer.Exit(1) from None


def resolve_cache_dir(cache_dir: Path | None) -> Path:
    """The ``--cache-dir`` value, else the default cache folder."""
    return cache_dir if cache_dir is not None else default_cache_dir()


@app.command("fetch")
def fetch(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Model names from the manifest.", metavar="NAME", show_default=False),
    ] = None,
    manifest: ManifestOption = DEFAULT_MANIFEST,
    cache_dir: CacheDirOption = None,
    all_models: Annotated[bool, typer.Option("--all", help="Fetch every model.")] = False,
) -> None:
    """Fetch models into the cache, verifying each sha256; exit 1 if any fails."""
    manifest = manifest_or_default(manifest)
    loaded = open_manifest(manifest)
    entries = _select(loaded, names or [], all_models=all_models)
    folder = resolve_cache_dir(cache_dir)
    manifest_dir = manifest.resolve().parent
    failed = 0
    for entry in entries:
        try:
            _fetch_one(entry, cache_dir=folder, manifest_dir=manifest_dir)
        except LensflowError as err:
            say_error(str(err))
            failed += 1
    if failed:
        fail(f"{failed} of {len(entries)} model(s) failed")


def _select(manifest: Manifest, names: list[str], *, all_models: bool) -> list[ModelEntry]:
    """The entries to fetch; exits 1 before any download when a name is unknown."""
    if all_models and names:
        fail("give model names or --all, not both")
    if all_models:
        return list(manifest.models.values())
    if not names:
        fail(f"give model names or --all; models: {manifest.names_text()}")
    entries, errors = [], []
    for name in dict.fromkeys(names):
        try:
            entries.append(manifest.entry(name))
        except LensflowError as err:
            errors.append(str(err))
    for message in errors[:-1]:
        say_error(message)
    if errors:
        fail(errors[-1])
    return entries


def _fetch_one(entry: ModelEntry, *, cache_dir: Path, manifest_dir: Path) -> Path:
    """Fetch one entry with a progress line; print where it is and whether it was cached."""
    path = cached_path(entry, cache_dir=cache_dir)
    if path is not None:
        out.print(f"[green]cached[/green]  {entry.name}  {path}", highlight=False, soft_wrap=True)
        return path
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
    )
    live = err_console.is_terminal
    with Progress(*columns, console=err_console, transient=True, disable=not live) as progress:
        task = progress.add_task(f"{entry.name} ({entry.scheme})", total=None)

        def report(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        path = fetch_model(entry, cache_dir=cache_dir, manifest_dir=manifest_dir, progress=report)
    out.print(f"[green]fetched[/green] {entry.name}  {path}", highlight=False, soft_wrap=True)
    return path


@app.command("list")
def list_models(
    manifest: ManifestOption = DEFAULT_MANIFEST,
    cache_dir: CacheDirOption = None,
) -> None:
    """List the manifest's models and whether each is in the cache with the right sha256."""
    manifest = manifest_or_default(manifest)
    loaded = open_manifest(manifest)
    folder = resolve_cache_dir(cache_dir)
    table = Table(title=f"models in {manifest} (cache: {folder})", title_justify="left")
    for column in ("name", "kind", "source", "cached"):
        table.add_column(column, overflow="fold")
    for entry in loaded.models.values():
        table.add_row(entry.name, entry.kind, entry.source, _cache_state(entry, cache_dir=folder))
    out.print(table)


def _cache_state(entry: ModelEntry, *, cache_dir: Path) -> str:
    """'yes', 'no', or 'wrong sha256' for a cached file that does not match."""
    try:
        if cached_path(entry, cache_dir=cache_dir) is not None:
            return "[green]yes[/green]"
    except LensflowError:
        return "[red]unreadable[/red]"
    if cache_path(entry, cache_dir=cache_dir).exists():
        return "[red]wrong sha256[/red]"
    return "no"


@app.command("samples")
def samples(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            help="Sample names (all photos when none; a video only by name).",
            metavar="NAME",
            show_default=False,
        ),
    ] = None,
    manifest: ManifestOption = DEFAULT_MANIFEST,
    cache_dir: CacheDirOption = None,
) -> None:
    """Fetch the manifest's samples (sha256-checked) and print their paths, one a line.

    For other commands' arguments: lensflow detect $(lensflow models samples darknet-dog)
    """
    from lensflow.models.export.samples import fetch_samples

    try:
        paths = fetch_samples(
            names or None,
            manifest=manifest_or_default(manifest),
            cache_dir=resolve_cache_dir(cache_dir),
        )
    except LensflowError as err:
        fail(str(err))
    for path in paths:
        print(path)


@app.command("hash")
def hash_files(
    files: Annotated[
        list[Path], typer.Argument(help="Files to hash.", metavar="FILE", show_default=False)
    ],
) -> None:
    """Print the sha256 of each FILE (as sha256sum does), to pin it in the manifest."""
    for file in files:
        if not file.is_file():
            fail(f"not a file: {file}")
        try:
            digest = sha256_file(file)
        except LensflowError as err:
            fail(str(err))
        out.print(f"{digest}  {file}", markup=False, highlight=False, soft_wrap=True)
