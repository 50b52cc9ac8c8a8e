"""What C libraries write to fd 2 (OpenCV, FFmpeg) becomes log lines while the capture is on."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import cv2
import pytest

from lensflow.edge.native_stderr import NativeStderr

NATIVE = "lensflow.edge.native"


@pytest.fixture
def capture() -> Iterator[NativeStderr]:
    """A capture of its own (not the process's), released even when a test fails."""
    capture = NativeStderr()
    yield capture
    while capture.installed:
        capture.release()


def native_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == NATIVE]


def test_lines_written_to_fd2_become_log_lines_and_fd2_is_restored_after(capture, caplog, capfd):
    with caplog.at_level(logging.INFO, logger=NATIVE):
        with capture.captured():
            os.write(2, b"[ WARN:0@0.015] global cap.cpp:212 open VIDEOIO(FFMPEG): x\n")
            capture.sync()
        os.write(2, b"after the capture\n")

    assert native_lines(caplog) == ["[ WARN:0@0.015] global cap.cpp:212 open VIDEOIO(FFMPEG): x"]
    assert capfd.readouterr().err == "after the capture\n"


@pytest.mark.parametrize(
    ("line", "level"),
    [
        (b"[ WARN:0@0.015] global cap.cpp:212 open VIDEOIO(FFMPEG): x", logging.WARNING),
        (b"[ERROR:0@0.020] global cap.cpp:164 open VIDEOIO(CV_IMAGES): y", logging.ERROR),
        (b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", logging.INFO),
        (b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55] moov atom not found", logging.WARNING),  # libav
    ],
)
def test_a_native_line_keeps_the_level_it_states(capture, caplog, line, level):
    with caplog.at_level(logging.INFO, logger=NATIVE), capture.captured():
        os.write(2, line + b"\n")
        capture.sync()

    [record] = [r for r in caplog.records if r.name == NATIVE]
    assert record.levelno == level


def test_ffmpeg_lines_of_a_real_open_name_the_camera(capture, caplog, tmp_path):
    (tmp_path / "fake.mp4").write_bytes(b"not a video" * 10)

    with (
        caplog.at_level(logging.INFO, logger=NATIVE),
        capture.captured(),
        capture.watch(camera="street", target="fake.mp4", settle=True),
    ):
        cv2.VideoCapture(str(tmp_path / "fake.mp4")).release()

    [line] = [line for line in native_lines(caplog) if "moov atom" in line]
    assert line.startswith("camera street: fake.mp4: [mov,mp4")


def test_a_failing_watch_keeps_its_lines_for_the_failure_line(capture, caplog):
    with (
        caplog.at_level(logging.INFO, logger=NATIVE),
        capture.captured(),
        capture.watch(camera="dock", target="rtsp://cam/1") as watch,
    ):
        os.write(2, b"[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized\n")
        watch.fail()

    assert watch.said == "[rtsp @ 0x1] method DESCRIBE failed: 401 Unauthorized"
    assert native_lines(caplog) == []  # said once, in the source's own warning line


def test_python_logging_on_fd2_still_reaches_the_terminal_and_never_loops(capture, caplog, capfd):
    # given a root handler writing to fd 2, as `lensflow edge` sets up its log
    terminal = open(2, "w", closefd=False)  # noqa: SIM115 - the handler's stream
    handler = logging.StreamHandler(terminal)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        with caplog.at_level(logging.INFO), capture.captured():
            logging.getLogger("tests.native").warning("from python")
            os.write(2, b"from C\n")
            capture.sync()
    finally:
        logging.getLogger().removeHandler(handler)

    # then the Python line went to the terminal once, not through the pipe into the log again
    err = capfd.readouterr().err
    assert err.count("tests.native: from python") == 1
    assert "lensflow.edge.native: from C" in err  # the native line, in the log format
    assert native_lines(caplog) == ["from C"]
    assert handler.stream is terminal  # given back


def test_the_capture_is_held_until_its_last_holder_releases_it(capture):
    capture.acquire()
    capture.acquire()
    capture.release()

    assert capture.installed
    capture.release()
    assert not capture.installed
