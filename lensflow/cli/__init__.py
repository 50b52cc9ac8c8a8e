"""The ``lensflow`` command line: one console script, one sub-app per area.

Each tier's commands import that tier lazily, inside the command, so ``lensflow --help`` is
fast and a missing optional dependency only affects the commands that need it.
"""

from __future__ import annotations

import typer

from lensflow.cli import (
    bench_classifiers,
    bench_scale,
    bench_search,
    cloud_api,
    demo,
    models_classifier,
    models_export,
    models_push,
    models_triton,
    review,
    train,
)
from lensflow.cli.bench import app as bench_app
from lensflow.cli.broker import app as broker_app
from lensflow.cli.cloud import app as cloud_app
from lensflow.cli.configs import app as configs_app
from lensflow.cli.detect import detect
from lensflow.cli.edge import edge
from lensflow.cli.models import app as models_app
from lensflow.cli.pipeline import app as pipeline_app

app = typer.Typer(
    name="lensflow",
    help="Edge-to-cloud vision pipeline: detect at the edge, classify in the cloud, review.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
train.register(app, pipeline_app)
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(configs_app, name="configs")
app.add_typer(broker_app, name="broker")
models_export.register(models_app)
models_classifier.register(models_app)
models_push.register(models_app)
models_triton.register(models_app)
app.add_typer(models_app, name="models")
bench_search.register(bench_app)
review.register(app, bench_app)
bench_classifiers.register(bench_app)
bench_scale.register(bench_app)
app.add_typer(bench_app, name="bench")
app.command("edge")(edge)
app.command("detect")(detect)
demo.register(app)
cloud_api.register(cloud_app)
app.add_typer(cloud_app, name="cloud")


def main() -> None:
    """Entry point of the ``lensflow`` console script."""
    app()
