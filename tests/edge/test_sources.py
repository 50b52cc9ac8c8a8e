"""Frame sources: folders, video files, streams that never answer, USB devices, the factory."""

from __future__ import annotations

import functools
import http.server
import itertools
import logging
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC
from pathlib import Path

import cv2
import numpy as np
import pytest

from lensflow.edge import sources
from lensflow.edge.live_sources import StreamSource, UsbSource
from lensflow.edge.native_stderr import native_stderr
from lensflow.edge.sample_video import make_sample_video, write_video
from lensflow.edge.sources import (
    Backoff,
    FolderSource,
    Frame,
    FrameSource,
    VideoSource,
    open_source,
)
from lensflow.shared.classifiers.base import Image
from lensflow.shared.config import edge as cfg
from tests.support.bomb_headers import bomb_header


def fast() -> Backoff:
    """Retries every 25-200 ms, so a test sees several in a second."""
    return Backoff(initial_s=0.05, max_s=0.2)


def small(image: Image) -> Image:
    return cv2.resize(image, (160, 120), interpolation=cv2.INTER_AREA)


@pytest.fixture
def photo_folder(tmp_path: Path, sample_images: dict[str, Image]) -> Path:
    """a.jpg (bus), b.jpg (corrupt bytes), c.png (zidane)."""
    cv2.imwrite(str(tmp_path / "a.jpg"), small(sample_images["bus"]))
    (tmp_path / "b.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated, not a JPEG")
    cv2.imwrite(str(tmp_path / "c.png"), small(sample_images["zidane"]))
    (tmp_path / "notes.txt").write_text("not an image suffix: never listed")
    return tmp_path


@pytest.fixture(scope="module")
def pan_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 frames at 10 fps panning over the real photos."""
    return make_sample_video(tmp_path_factory.mktemp("video") / "pan.avi", frames=60, fps=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def silent_http() -> Iterator[tuple[str, threading.Event]]:
    """An HTTP server that accepts connections and never replies; the event marks an accept."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = threading.Event()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:  # the server socket was closed: the fixture is over
                return
            accepted.set()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/", accepted
    server.close()
    for conn in held:
        conn.close()


class QuietFiles(http.server.SimpleHTTPRequestHandler):
    """Serves a folder over HTTP, like a camera serving a clip, without request logs."""

    def log_message(self, format, *args):
        """Keep request lines out of the test output."""


def consume(source: FrameSource) -> tuple[threading.Thread, list[Frame]]:
    """Iterate the source in a thread of its own, as a camera worker does."""
    frames: list[Frame] = []
    thread = threading.Thread(target=lambda: frames.extend(source), daemon=True)
    thread.start()
    return thread, frames


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def stop_and_time(stop: threading.Event, thread: threading.Thread) -> float:
    started = time.monotonic()
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    return time.monotonic() - started


# --- folders


def test_folder_skips_a_corrupt_image_and_delivers_the_others(photo_folder, caplog):
    source = FolderSource(photo_folder, camera="gate", fps=5)

    with caplog.at_level(logging.WARNING, logger="lensflow.edge.sources"):
        frames = list(source)

    assert [f.source_pos for f in frames] == ["a.jpg", "c.png"]
    assert [f.index for f in frames] == [0, 1]
    assert all(f.camera == "gate" and f.captured_at.tzinfo is UTC for f in frames)
    assert frames[0].image.shape == (120, 160, 3) and frames[0].image.dtype == np.uint8
    assert source.stats.frames_read == 2
    assert source.stats.frames_skipped_undecodable == 1
    assert any("gate" in r.message and "b.jpg" in r.message for r in caplog.records)


def test_folder_loop_starts_again_after_the_last_image(photo_folder):
    source = FolderSource(photo_folder, camera="gate", fps=5, loop=True)

    frames = list(itertools.islice(source, 5))
    source.close()

    assert [f.source_pos for f in frames] == ["a.jpg", "c.png", "a.jpg", "c.png", "a.jpg"]
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert source.stats.frames_skipped_undecodable == 2  # once per pass


def test_folder_loop_of_only_corrupt_images_ends_instead_of_spinning(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    source = FolderSource(tmp_path, camera="gate", fps=5, loop=True)

    assert list(source) == []
    assert source.stats.frames_skipped_undecodable == 1


def test_folder_in_realtime_is_paced_to_fps(photo_folder):
    source = FolderSource(photo_folder, camera="gate", fps=20, loop=True, realtime=True)

    started = time.monotonic()
    frames = list(itertools.islice(source, 5))

    assert len(frames) == 5
    assert time.monotonic() - started >= 4 / 20 * 0.9  # 4 intervals between 5 frames


def test_missing_folder_is_reported_retried_and_picked_up_when_it_appears(
    tmp_path, sample_images, caplog
):
    # given a folder source on a path where nothing is yet
    folder = tmp_path / "later"
    source = FolderSource(folder, camera="gate", fps=5, backoff=fast())

    # when it is read while the folder is missing, and the folder then appears
    with caplog.at_level(logging.WARNING):
        thread, frames = consume(source)
        assert wait_for(lambda: source.stats.failures.get("missing", 0) >= 2, timeout_s=5)
        staging = tmp_path / "staging"
        staging.mkdir()
        cv2.imwrite(str(staging / "a.jpg"), small(sample_images["bus"]))
        staging.rename(folder)
        thread.join(5)

    # then each failed look is one warning line (camera, folder, reason), and the images come
    assert not thread.is_alive()
    assert [f.source_pos for f in frames] == ["a.jpg"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == source.stats.failures["missing"]
    assert all(r.exc_info is None for r in caplog.records)
    line = warnings[0].getMessage()
    assert "camera gate" in line and str(folder) in line and "missing" in line
    assert "retry 1 in" in line


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda path: path.write_text("a file, not a folder"), "unreadable"),
        (lambda path: path.mkdir(), "empty"),  # no image file yet
    ],
)
def test_folder_that_is_not_usable_yet_is_counted_by_reason(tmp_path, make, reason):
    make(tmp_path / "frames")
    stop = threading.Event()
    source = FolderSource(tmp_path / "frames", camera="gate", fps=5, backoff=fast(), stop=stop)

    thread, frames = consume(source)

    assert wait_for(lambda: source.stats.failures.get(reason, 0) >= 2, timeout_s=5)
    assert stop_and_time(stop, thread) < 3
    assert frames == [] and source.stats.last_failure == reason


def test_a_failing_source_is_dead_after_its_open_timeout_until_it_gives_a_frame(
    tmp_path, sample_images
):
    source = FolderSource(
        tmp_path / "frames", camera="gate", fps=5, loop=True, backoff=fast(), open_timeout_s=0.3
    )
    thread, frames = consume(source)
    assert not source.dead  # failing, but not for long yet

    assert wait_for(lambda: source.dead, timeout_s=5)
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.jpg"), small(sample_images["bus"]))

    assert wait_for(lambda: len(frames) > 0, timeout_s=5)
    assert not source.dead
    source.close()
    thread.join(5)


# --- decompression bombs


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("jpeg", "b.jpg"),  # SOF0 of 20000x20000
        ("png", "b.png"),  # IHDR of 20000x20000
        ("webp", "b.webp"),  # VP8X canvas of 20000x20000
    ],
)
def test_folder_skips_a_bomb_before_decoding_and_counts_it_too_large(
    tmp_path, sample_images, caplog, kind, name
):
    # given a real photo and a bomb among the images
    cv2.imwrite(str(tmp_path / "a.jpg"), small(sample_images["bus"]))
    (tmp_path / name).write_bytes(bomb_header(kind))
    source = FolderSource(tmp_path, camera="gate", fps=5)

    # when the folder is read
    with caplog.at_level(logging.WARNING):
        frames = list(source)

    # then only the photo is a frame; the bomb is one warning line and counted too_large
    assert [f.source_pos for f in frames] == ["a.jpg"]
    assert source.stats.failures == {"too_large": 1}
    assert source.stats.frames_skipped_too_large == 1
    assert source.stats.frames_skipped_undecodable == 0
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "camera gate" in line and "too_large" in line and name in line
    assert "20000x20000" in line


def test_folder_max_image_pixels_comes_from_the_camera_config(tmp_path, sample_images):
    cv2.imwrite(str(tmp_path / "a.jpg"), small(sample_images["bus"]))  # 160x120
    config = cfg.FolderSource(path=str(tmp_path), max_image_pixels=160 * 120 - 1)
    source = open_source(config, camera="gate", fps=5, stop=threading.Event(), realtime=False)

    assert list(source) == []
    assert source.stats.failures == {"too_large": 1}


# --- video files


@pytest.mark.parametrize("suffix", [".avi", ".mp4"])
def test_write_video_reads_back_with_the_right_count_and_fps(tmp_path, sample_images, suffix):
    frames = [np.roll(small(sample_images["bus"]), 4 * i, axis=1) for i in range(12)]

    path = write_video(frames, tmp_path / f"clip{suffix}", fps=8)

    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 12
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(8)
    assert (capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (
        160,
        120,
    )
    capture.release()


@pytest.mark.parametrize(
    ("frames", "name"),
    [
        ([], "empty.avi"),  # nothing to write
        ([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8)], "mixed.avi"),  # sizes
        ([np.zeros((8, 8), np.uint8)], "grey.avi"),  # not BGR
        ([np.zeros((8, 8, 3), np.uint8)], "clip.mkv"),  # no codec chosen for .mkv
    ],
)
def test_write_video_rejects_what_it_cannot_write(tmp_path, frames, name):
    with pytest.raises(ValueError, match="expected frames of one HxWx3 shape"):
        write_video(frames, tmp_path / name, fps=10)


def test_sample_video_pans_smoothly_over_both_photos(pan_video):
    frames = [f.image for f in VideoSource(pan_video, camera="street", fps=10)]

    assert len(frames) == 60
    assert frames[0].shape == (480, 640, 3)
    changes = [cv2.absdiff(a, b).mean() for a, b in itertools.pairwise(frames)]
    assert int(np.argmax(changes)) == 29  # the cut: bus for 30 frames, then zidane for 30
    grey = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY).astype(np.float32) for f in frames]
    shifts = [np.hypot(*cv2.phaseCorrelate(a, b)[0]) for a, b in itertools.pairwise(grey)]
    del shifts[29]
    assert max(shifts) < 25  # pixels per frame: a tracker can follow
    assert np.mean(shifts) > 2  # and things do move


def test_video_at_the_file_fps_delivers_every_frame_with_its_media_time(pan_video):
    source = VideoSource(pan_video, camera="street", fps=10)

    frames = list(source)

    assert len(frames) == 60
    assert [f.source_pos for f in frames[:3]] == [0.0, 100.0, 200.0]
    assert source.stats.frames_dropped == 0


def test_video_at_half_the_file_fps_keeps_every_other_frame(pan_video):
    source = VideoSource(pan_video, camera="street", fps=5)

    frames = list(source)

    assert len(frames) == 30
    assert [f.source_pos for f in frames[:3]] == [0.0, 200.0, 400.0]
    assert [f.index for f in frames] == list(range(30))
    assert source.stats.frames_dropped == 30


def test_video_loop_keeps_media_time_counting(pan_video):
    source = VideoSource(pan_video, camera="street", fps=5, loop=True)

    frames = list(itertools.islice(source, 35))
    source.close()

    assert frames[30].source_pos == 6000.0  # first frame of the second pass
    assert all(b.source_pos > a.source_pos for a, b in itertools.pairwise(frames))


def test_video_stops_when_its_stop_event_is_set(pan_video):
    stop = threading.Event()
    source = VideoSource(pan_video, camera="street", fps=10, stop=stop)

    frames = []
    for frame in source:
        frames.append(frame)
        if len(frames) == 3:
            stop.set()

    assert len(frames) == 3


def test_video_that_cannot_be_opened_is_one_line_with_what_ffmpeg_said(tmp_path, caplog, capfd):
    # given a file that is no video
    (tmp_path / "fake.mp4").write_bytes(b"not a video" * 10)
    stop = threading.Event()
    source = VideoSource(tmp_path / "fake.mp4", camera="street", fps=5, backoff=fast(), stop=stop)

    # when it is read while OpenCV's and FFmpeg's stderr is captured
    with native_stderr.captured(), caplog.at_level(logging.INFO):
        thread, frames = consume(source)
        assert wait_for(lambda: source.stats.failures.get("undecodable", 0) >= 1, timeout_s=5)
        stop_and_time(stop, thread)

    # then each attempt is one warning line naming camera, file, reason and FFmpeg's words,
    # and nothing reaches stderr raw
    assert frames == []
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == source.stats.failures["undecodable"]
    assert "camera street" in lines[0] and "fake.mp4" in lines[0]
    assert "undecodable" in lines[0] and "moov atom not found" in lines[0]
    assert "moov atom" not in capfd.readouterr().err


def test_missing_video_is_retried_and_played_when_it_appears(tmp_path, pan_video, caplog):
    path = tmp_path / "street.avi"
    source = VideoSource(path, camera="street", fps=10, backoff=fast())

    with caplog.at_level(logging.WARNING):
        thread, frames = consume(source)
        assert wait_for(lambda: source.stats.failures.get("missing", 0) >= 1, timeout_s=5)
        shutil.copy(pan_video, tmp_path / "copying")
        (tmp_path / "copying").rename(path)
        thread.join(10)

    assert len(frames) == 60
    assert all(r.exc_info is None for r in caplog.records)
    assert "missing" in caplog.records[0].getMessage()


def test_video_that_opens_but_gives_no_frame_is_undecodable_and_ends(tmp_path, pan_video, caplog):
    # given an AVI whose start survives but whose frames are zeros
    data = bytearray(pan_video.read_bytes())
    data[4096:-4096] = bytes(len(data) - 8192)
    (tmp_path / "broken.avi").write_bytes(bytes(data))
    source = VideoSource(tmp_path / "broken.avi", camera="street", fps=10)

    with caplog.at_level(logging.WARNING, logger="lensflow.edge.file_sources"):
        frames = list(source)

    assert frames == []
    assert source.stats.failures == {"undecodable": 1}
    [line] = [r.getMessage() for r in caplog.records if r.name == "lensflow.edge.file_sources"]
    assert "camera street" in line and "no frame decodes" in line


# --- streams and USB devices


def test_stream_over_http_delivers_frames(pan_video):
    handler = functools.partial(QuietFiles, directory=str(pan_video.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{pan_video.name}"
    source = StreamSource(url, camera="lobby", fps=100, open_timeout_s=2, backoff=fast())
    try:
        frames = list(itertools.islice(source, 3))
    finally:
        source.close()
        server.shutdown()
        server.server_close()

    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].image.shape == (480, 640, 3)
    assert frames[0].camera == "lobby"


def test_stream_with_nothing_listening_yields_nothing_counts_reconnects_and_stops_promptly():
    stop = threading.Event()
    url = f"rtsp://127.0.0.1:{free_port()}/x"
    source = StreamSource(url, camera="dock", fps=5, open_timeout_s=0.5, backoff=fast(), stop=stop)

    thread, frames = consume(source)

    assert wait_for(lambda: source.stats.reconnects >= 3, timeout_s=5)
    assert stop_and_time(stop, thread) < 3
    assert frames == []
    assert source.stats.errors >= 3


def test_http_stream_that_never_replies_times_out_and_reconnects(silent_http):
    url, _ = silent_http
    stop = threading.Event()
    source = StreamSource(url, camera="dock", fps=5, open_timeout_s=0.3, backoff=fast(), stop=stop)

    thread, frames = consume(source)

    assert wait_for(lambda: source.stats.reconnects >= 2, timeout_s=5)
    assert stop_and_time(stop, thread) < 3
    assert frames == []


def test_stop_is_prompt_even_while_an_open_hangs(silent_http):
    url, accepted = silent_http
    stop = threading.Event()
    source = StreamSource(url, camera="dock", fps=5, open_timeout_s=10, stop=stop)

    thread, frames = consume(source)

    assert accepted.wait(5)  # the reader is now inside OpenCV, waiting for a reply
    assert stop_and_time(stop, thread) < 3
    assert frames == []
    assert source.stats.reconnects == 0  # no attempt finished yet


def test_close_from_another_thread_ends_iteration(silent_http):
    url, accepted = silent_http
    source = StreamSource(url, camera="dock", fps=5, open_timeout_s=10)

    thread, _ = consume(source)
    assert accepted.wait(5)
    started = time.monotonic()
    source.close()
    thread.join(5)

    assert not thread.is_alive() and time.monotonic() - started < 3


def test_usb_device_that_is_absent_is_retried_until_stopped():
    stop = threading.Event()
    source = UsbSource(63, camera="desk", fps=5, backoff=fast(), stop=stop)

    thread, frames = consume(source)

    assert wait_for(lambda: source.stats.reconnects >= 2, timeout_s=5)
    assert stop_and_time(stop, thread) < 3
    assert frames == []


def test_stream_password_stays_out_of_logs():
    source = StreamSource("rtsp://admin:s3cret@10.0.0.5:554/live", camera="dock", fps=5)

    assert "s3cret" not in source.target
    assert source.target == "rtsp://10.0.0.5:554/live"


def test_backoff_doubles_up_to_its_cap_with_jitter_and_resets():
    backoff = Backoff(initial_s=1, max_s=8, factor=2)

    delays = [backoff.next_delay() for _ in range(6)]
    backoff.reset()

    for delay, base in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert base * 0.5 <= delay <= base
    assert backoff.next_delay() <= 1


# --- factory


@pytest.mark.parametrize(
    ("config", "kind"),
    [
        (cfg.FolderSource(path="frames", loop=True), FolderSource),
        (cfg.VideoSource(path="street.mp4"), VideoSource),
        (cfg.StreamSource(url="rtsp://cam/1", open_timeout_s=3), StreamSource),
        (cfg.UsbSource(device=2), UsbSource),
    ],
)
def test_open_source_builds_the_configured_kind_without_opening_it(config, kind):
    source = open_source(config, camera="c", fps=5, stop=threading.Event(), realtime=False)

    assert type(source) is kind
    assert source.stats == sources.SourceStats()
