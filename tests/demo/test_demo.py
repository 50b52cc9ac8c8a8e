"""``lensflow demo`` for real: a private mosquitto, the worker, the API and an edge agent as
child processes on small sample inputs; the summary's figures; no process left behind.

The models come from the project's cache (``var/models``); a fresh clone fetches and exports
them on the first run (about two minutes, once).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lensflow.demo.monitor import CameraCounts, Progress
from lensflow.demo.prepare import DemoError, DemoOptions, Layout
from lensflow.demo.run import Demo

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = ("--max-images", "3", "--frames", "12", "--timeout", "120")


def demo_command(workdir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "lensflow", "demo", "--workdir", str(workdir), *SMALL, *args]


def processes_using(folder: Path) -> dict[int, str]:
    """Live processes whose command line mentions ``folder`` (the demo's children do)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue  # exited meanwhile
        if str(folder) in cmdline and state != "Z":
            found[int(entry.name)] = cmdline
    return found


def test_demo_once_processes_everything_and_summarises(tmp_path: Path) -> None:
    # given a fresh work folder and small inputs
    workdir, summary_file = tmp_path / "demo", tmp_path / "summary.json"

    # when the demo runs once
    done = subprocess.run(
        demo_command(workdir, "--once", "--json", str(summary_file)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    # then it succeeds and stored exactly what the edge sent
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    assert summary["complete"] is True
    cameras = summary["cameras"]
    assert set(cameras) == {"photos", "video"}
    assert cameras["photos"]["frames"] == 3  # bus.jpg, darknet's dog.jpg and person.jpg
    assert cameras["video"]["frames"] >= 5  # 12 frames at 10 fps sampled to 5 fps
    assert summary["sent"] > 0
    assert summary["stored"] == summary["sent"]
    for counts in cameras.values():
        assert counts["crops_stored"] == counts["crops_sent"]
    # the offline COCO detector found people and vehicles (the bus, the dog's pickup truck)
    people = summary["classes"].get("person", 0)
    vehicles = sum(summary["classes"].get(name, 0) for name in ("car", "bus", "truck"))
    assert people > 0 and vehicles > 0
    assert sum(c["detections"] for c in cameras.values()) >= people + vehicles
    # every stored person crop got a shirt colour, and the colour is one of the palette's
    nodes = {node["node"]: node for node in summary["nodes"]}
    shirts = nodes["tshirt_color_classification"]
    assert shirts["ok"] == people
    assert shirts["labels"]
    assert set(shirts["labels"]) <= {
        *("white", "black", "grey", "red", "orange", "yellow", "green", "blue", "navy"),
        *("purple", "pink", "brown", "beige", "unknown"),
    }
    # every vehicle took the vehicle-type branch, and got a type
    vehicle_types = nodes["vehicle_type_classification"]
    assert vehicle_types["ok"] == vehicles and vehicle_types["labels"]
    assert nodes["embedding"]["ok"] == summary["stored"]
    # the search example found similar crops through the API, best first
    assert summary["search_error"] is None
    assert summary["search_query"]["crop_id"]
    similarities = [hit["similarity"] for hit in summary["search_results"]]
    assert similarities
    assert similarities == sorted(similarities, reverse=True)
    assert summary["search_query"]["crop_id"] not in {
        h["crop_id"] for h in summary["search_results"]
    }
    # and it printed the summary and how to open the review app
    assert "Image search: crops similar to" in done.stdout
    assert f"lensflow review --api {summary['api_url']} --key {summary['api_key']}" in done.stdout
    # and nothing it started is still running
    assert processes_using(workdir) == {}


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_run_stops_every_child(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    # given a demo left running (no --once) whose edge agent has started
    workdir = tmp_path / "demo"
    demo = subprocess.Popen(
        demo_command(workdir),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        children: dict[int, str] = {}
        while not any(" edge " in cmd for cmd in children.values()):
            assert demo.poll() is None, demo.communicate()[0].decode()[-3000:]
            assert time.monotonic() < deadline, f"the edge never started: {children}"
            time.sleep(0.2)
            children = {p: c for p, c in processes_using(workdir).items() if p != demo.pid}
        # broker, worker, API and edge are all up
        assert len(children) >= 4, children

        # when it gets SIGINT (Ctrl+C) or SIGTERM mid-run
        demo.send_signal(sig)
        output = demo.communicate(timeout=90)[0].decode()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()

    # then it says so, exits 130 or 143, and none of its children outlived it
    assert demo.returncode == code, output[-3000:]
    assert "everything it started has been stopped" in output
    assert processes_using(workdir) == {}


def test_a_work_folder_in_use_by_a_running_demo_is_refused(tmp_path: Path) -> None:
    # given a work folder whose pid file names a live process
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "demo.pid").write_text(f"{other.pid}\n")

        # when another demo claims it, then it is refused with the pid and what to do
        with pytest.raises(DemoError, match=rf"demo pid {other.pid} is using it"):
            Layout(tmp_path).fresh()
    finally:
        other.kill()
        other.wait()

    # and once that process is gone, the folder is claimed and the old run state wiped
    (tmp_path / "run" / "old").mkdir(parents=True)
    Layout(tmp_path).fresh()
    assert (tmp_path / "demo.pid").read_text().strip() == str(os.getpid())
    assert not (tmp_path / "run" / "old").exists()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"finished": False}, "has not finished cameras ['video']"),
        ({"spooled": 3, "published": 7}, "still holds 3 crops in its spool, 7 of 10"),
        ({"stored": 6, "dead_letters": 1}, "the worker stored 6 and dead-lettered 1 of the 10"),
    ],
)
def test_a_stuck_run_says_where_it_is_stuck(
    tmp_path: Path, state: dict[str, Any], expected: str
) -> None:
    # given a run whose edge sent 10 crops, stuck at one stage
    video = CameraCounts(
        frames=30,
        detections=12,
        crops_sent=10,
        crops_stored=state.get("stored", 10),
        finished=state.get("finished", True),
    )
    progress = Progress(
        cameras={"video": video},
        spooled=state.get("spooled", 0),
        published=state.get("published", 10),
        dead_letters=state.get("dead_letters", 0),
    )
    assert not progress.done

    # when the timeout passes, then the message names the stage, the figures and the logs
    message = Demo(DemoOptions(workdir=tmp_path, timeout_s=42), Console())._stuck(progress)
    assert message.startswith("stuck: not everything was processed within 42 s")
    assert expected in message
    assert str(tmp_path / "run" / "logs") in message


def test_demo_teach_closes_the_loop_through_the_api(tmp_path: Path) -> None:
    # given a fresh work folder and the default inputs (enough crops of each kind to learn)
    workdir, summary_file = tmp_path / "demo", tmp_path / "summary.json"

    # when the demo runs once and then teaches a new node
    done = subprocess.run(
        [sys.executable, "-m", "lensflow", "demo", "--workdir", str(workdir), "--teach", "--once",
         "--json", str(summary_file)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip

    # then labels went in, a head passed the gate, the replay saw it, and new crops came back
    # labelled by the head the worker swapped to without a restart
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    teach = json.loads(summary_file.read_text())["teach"]
    assert teach["labels"] >= 60 and set(teach["label_counts"]) == {"person", "vehicle", "animal"}
    assert teach["gate"].startswith("majority class")
    assert 0.5 < teach["heldout_accuracy"] <= 1.0
    assert teach["replay_changed"] > 0
    assert teach["live_sent"] > 0 and teach["live_labelled"] == teach["live_sent"]
    assert "new crops labelled by the head" in done.stdout
    assert processes_using(workdir) == {}
