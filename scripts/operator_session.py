"""A scripted operator reviews 100 real crops in the review app under Xvfb, with real key events.

Run: ``.venv/bin/python scripts/operator_session.py [--crops 100] [--out docs/operator]``
(needs ``Xvfb``, ``xdotool`` and ImageMagick's ``import``: ``make operator-session`` installs
them on Debian). The API is ``lensflow cloud api`` on a temporary SQLite database holding what
the demo's pipeline makes of its inputs (the offline COCO detector over the demo's photos and
clip, :mod:`tests.support.review_real`). The app (``lensflow review``) runs as its own process
on a virtual X display; the script only types keys into it with ``xdotool`` and takes a
screenshot after each phase, as a person would see it.

The operator decides each crop with one key (A accept, R reject a wrong detection, U unsure, a
number key for another class of the schema), corrects a few (a wrong key, Ctrl+Z, the right
key) and, halfway, the API is stopped for 10 s: the decision made while it is down is kept and
marked unsaved, the list waits, and one arrow key moves on once the API is back. At the end
every crop's review is read back from the API and compared with what the operator decided:
the report (``report.json``) says how many keys were pressed per crop and whether anything
was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lensflow.desktop.api_review_types import QueueQuery  # noqa: E402
from lensflow.desktop.client import ApiClient  # noqa: E402
from tests.support.review_api import ReviewApi  # noqa: E402
from tests.support.review_real import EMBEDDING_NODE, demo_frames  # noqa: E402

X11_SOCKETS = Path("/tmp/.X11-unix")  # noqa: S108 - where X servers put their sockets
KEY_GAP_S = 0.25
"""Between two keys: a brisk operator."""
OUTAGE_S = 10.0
TRUCK_KEY = "8"
"""The COCO schema's key of ``truck`` (person, bicycle, car, motorcycle, airplane, bus, train,
truck: model order)."""


def tool(name: str) -> str:
    """The full path of a program this script needs."""
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} is missing: run `make operator-session` (installs it)")
    return path


@dataclass
class Plan:
    """What the operator decides about one crop, and the keys that say it."""

    crop_id: str
    status: str
    label: str | None = None
    keys: list[str] = field(default_factory=list)


def decide(index: int, item: object) -> Plan:
    """The operator's decision for the ``index``-th crop (deterministic: a script)."""
    detection = item.detection  # type: ignore[attr-defined]
    crop_id = item.crop_id  # type: ignore[attr-defined]
    if index % 25 == 24:
        return Plan(crop_id, "unsure", keys=["u"])
    if detection.class_name == "car" and detection.score >= 0.8:
        return Plan(crop_id, "relabelled", "truck", keys=[TRUCK_KEY])  # the demo's pickup
    if detection.score < 0.45:
        return Plan(crop_id, "rejected", keys=["r"])
    return Plan(crop_id, "accepted", keys=["a"])


def corrected(plan: Plan) -> Plan:
    """The same decision after a slip: a wrong key first, Ctrl+Z, then the right key."""
    wrong = "r" if plan.keys != ["r"] else "a"
    return Plan(plan.crop_id, plan.status, plan.label, keys=[wrong, "ctrl+z", *plan.keys])


class Display:
    """Xvfb on a free display number, screenshots of it, and keys typed with xdotool."""

    def __init__(self, folder: Path) -> None:
        """Start Xvfb (1600x1000); its number is the first free one from 90."""
        number = next(n for n in range(90, 200) if not (X11_SOCKETS / f"X{n}").exists())
        self.name = f":{number}"
        self.process = subprocess.Popen(  # noqa: S603 - our own tools and arguments
            [tool("Xvfb"), self.name, "-screen", "0", "1600x1000x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=(folder / "xvfb.log").open("wb"),
        )
        deadline = time.monotonic() + 10
        while not (X11_SOCKETS / f"X{number}").exists():
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise SystemExit("Xvfb did not start; see xvfb.log")
            time.sleep(0.1)
        self.env = os.environ | {"DISPLAY": self.name}
        self.keys = 0

    def xdotool(self, *args: str) -> str:
        """Run xdotool on this display; its output."""
        done = subprocess.run(  # noqa: S603 - our own tools and arguments
            [tool("xdotool"), *args], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def key(self, key: str) -> None:
        """Press one key (a real X key event), counted."""
        self.xdotool("key", "--clearmodifiers", key)
        self.keys += 1
        time.sleep(KEY_GAP_S)

    def shot(self, path: Path) -> None:
        """Save the whole screen to ``path``."""
        small = ["-resize", "1400x", "-colors", "256", f"PNG8:{path}"]
        command = [tool("import"), "-display", self.name, "-window", "root", *small]
        subprocess.run(command, check=True)  # noqa: S603 - our own tools and arguments
        print(f"wrote {path}")

    def close(self) -> None:
        """Stop Xvfb."""
        self.process.terminate()
        self.process.wait(10)


def start_app(display: Display, api: ReviewApi, folder: Path) -> subprocess.Popen[bytes]:
    """``lensflow review`` on the display, connected as an operator, focused."""
    env = display.env | {
        "QT_QPA_PLATFORM": "xcb",
        "HOME": str(folder / "home"),
        "XDG_CONFIG_HOME": str(folder / "home" / "config"),
        "XDG_CACHE_HOME": str(folder / "home" / "cache"),
        "LENSFLOW_API_KEY": api.tokens["operator"],
    }
    app = subprocess.Popen(  # noqa: S603 - this Python, our own arguments
        [sys.executable, "-m", "lensflow", "review", "--api", api.base_url],
        env=env,
        stdout=(folder / "app.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    found = ""
    while not found:
        if app.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the review app showed no window; see {folder}/app.log")
        time.sleep(0.5)
        search = ["search", "--onlyvisible", "--name", "lensflow review"]
        found = subprocess.run(  # noqa: S603 - our own tools and arguments
            [tool("xdotool"), *search], env=display.env, capture_output=True, text=True
        ).stdout.strip()
    wid = found.splitlines()[0]
    display.xdotool("windowsize", wid, "1600", "1000")
    display.xdotool("windowmove", wid, "0", "0")
    display.xdotool("windowfocus", "--sync", wid)
    time.sleep(4)  # the first page, the label schema and the thumbnails
    return app


def outcome(client: ApiClient, plans: list[Plan]) -> dict[str, object]:
    """Each crop's review as the API has it, against the plan: what was lost or wrong."""
    stored = {}
    cursor = None
    while True:
        page = client.review_queue(QueueQuery(), limit=500, cursor=cursor)
        stored.update({item.crop_id: item for item in page.items})
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    wrong = []
    for plan in plans:
        item = stored[plan.crop_id]
        review = item.reviews.get("detection")
        got = (review.status if review else None, item.human_labels.get("detection"))
        if got != (plan.status, plan.label):
            planned = [plan.status, plan.label]
            wrong.append({"crop_id": plan.crop_id, "planned": planned, "got": got})
    return {"decided": len(plans), "mismatched": wrong}


def main() -> None:
    """Seed, serve, review 100 crops with real keys, stop the API midway, check everything."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "operator")
    args = parser.parse_args()
    for name in ("Xvfb", "xdotool", "import"):
        tool(name)
    args.out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="lensflow-operator-"))
    display = Display(folder)
    try:
        with ReviewApi(folder / "api", search_node=EMBEDDING_NODE) as api:
            crops = api.seed_detected(frames=demo_frames(views=48, clip_frames=120, every=3))
            print(f"seeded {len(crops)} real crops")
            if len(crops) < args.crops:
                raise SystemExit(f"expected at least {args.crops} crops, got {len(crops)}")
            with ApiClient(api.base_url, key=api.tokens["viewer"]) as viewer:
                listed = viewer.review_queue(QueueQuery(), limit=args.crops).items
            plans = [decide(i, item) for i, item in enumerate(listed)]
            for slip in range(9, args.crops, 20):  # five slips, each corrected
                plans[slip] = corrected(plans[slip])
            app = start_app(display, api, folder)
            display.shot(args.out / "01-start.png")
            half = args.crops // 2
            for index, plan in enumerate(plans):
                if index == half:
                    stopped = time.monotonic()
                    api.stop()  # the API goes away
                    for key in plan.keys:
                        display.key(key)
                    continue
                for key in plan.keys:
                    display.key(key)
                if index == half + 1:  # decided while the API is down: kept, the list waits
                    time.sleep(1.0)
                    display.shot(args.out / "03-api-down.png")
                    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - stopped)))
                    api.start()
                    time.sleep(6.0)  # the next retry sends what was kept
                    display.shot(args.out / "04-api-back.png")
                    display.key("Right")  # moves on
            time.sleep(2.0)
            display.shot(args.out / "06-done.png")
            with ApiClient(api.base_url, key=api.tokens["viewer"]) as viewer:
                checked = outcome(viewer, plans)
            display.key("ctrl+q")
            exit_code = app.wait(15)
    finally:
        display.close()
    report = {
        "crops": args.crops,
        "keys": display.keys,
        "keys_per_crop": round(display.keys / args.crops, 3),
        "slips_corrected": len(range(9, args.crops, 20)),
        "api_down_s": OUTAGE_S,
        "app_exit_code": exit_code,
        **checked,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    lost = bool(checked["mismatched"]) or exit_code != 0 or report["keys_per_crop"] > 1.2
    raise SystemExit(1 if lost else 0)


if __name__ == "__main__":
    main()
