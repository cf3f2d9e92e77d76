"""Reliability at the download-folder boundary (`blemore prepare RAW OUT`): nothing of the user's is lost, nothing
half-written loads, every bad input is one line naming the file or clip and a non-zero exit status.

Each test reproduces one failure of issue 11 (or a close cousin) and checks that the input is left as it was.
"""

import hashlib
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import datasets
import pytest

import blemore
from blemore_toolkit.data.prepare import prepare_dataset, prepare_lock
from blemore_toolkit.data.synth_encoding import write_clip

BLEMORE_CLI = [sys.executable, "-c", "import sys, blemore; sys.exit(blemore.main())"]


def run_cli(*args, **kwargs):
    return subprocess.run([*BLEMORE_CLI, *map(str, args)], capture_output=True, text=True, **kwargs)


def one_line_error(result, *needles):
    """The command failed with exactly one line on stderr, no traceback, and the line says every needle."""
    assert result.returncode not in (0, None), result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert str(needle) in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict:
    """Every file below ``folder`` (links not followed) with a hash of its bytes, and every link with its target."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                found[str(path.relative_to(folder))] = "-> " + os.readlink(path)
            elif path.is_file():
                found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def small_download(root: Path, names=("A102_ang_int1_ver1", "A102_mix_ang_hap_30_70_ver1")) -> Path:
    (root / "clips").mkdir(parents=True)
    for i, name in enumerate(names):
        label = blemore.parse_clip_name(name)
        write_clip(root / "clips" / f"{name}.mov", label.emotions, label.salience, width=64, height=48,
                   duration_s=1.5, seed=i)
    return root


@pytest.fixture(scope="module")
def download(tmp_path_factory):
    """Two small clips with real names; tests copy it where they need to change it."""
    return small_download(tmp_path_factory.mktemp("download") / "raw")


def copy_download(download: Path, where: Path) -> Path:
    import shutil

    shutil.copytree(download, where)
    return where


# --- data loss: OUT overlapping RAW --------------------------------------------------------------------------------


@pytest.mark.parametrize("out_of", [
    lambda raw: raw,                        # prepare RAW RAW --overwrite
    lambda raw: raw.parent,                 # prepare PARENT/raw PARENT --overwrite
    lambda raw: raw / "clips",              # OUT inside RAW
    lambda raw: raw / "new" / "blemore",    # OUT deeper inside RAW, not there yet
])
def test_out_overlapping_raw_is_refused_before_anything_is_touched(download, tmp_path, out_of):
    raw = copy_download(download, tmp_path / "parent" / "raw")
    before = snapshot(tmp_path)
    line = one_line_error(run_cli("prepare", raw, out_of(raw), "--overwrite", "--quiet"), "RAW")
    assert "download folder" in line
    assert snapshot(tmp_path) == before


def test_prepare_dot_dot_inside_the_download_is_refused(download, tmp_path):
    raw = copy_download(download, tmp_path / "raw")
    before = snapshot(tmp_path)
    one_line_error(run_cli("prepare", ".", ".", "--overwrite", "--quiet", cwd=raw), "download folder RAW itself")
    assert snapshot(tmp_path) == before  # in particular no stray `..incomplete` inside RAW


def test_symlinks_are_resolved_before_comparing_out_and_raw(download, tmp_path):
    raw = copy_download(download, tmp_path / "raw")
    (tmp_path / "alias").symlink_to(raw)
    (tmp_path / "parent_alias").symlink_to(tmp_path)
    before = snapshot(tmp_path)
    one_line_error(run_cli("prepare", raw, tmp_path / "alias", "--overwrite", "--quiet"), "RAW itself")
    one_line_error(run_cli("prepare", tmp_path / "alias", tmp_path / "parent_alias", "--overwrite", "--quiet"),
                   "contains the download folder")
    assert snapshot(tmp_path) == before


def test_overwrite_replaces_only_a_prepared_folder(download, tmp_path):
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "thesis.tex").write_text("years of work")
    one_line_error(run_cli("prepare", download, tmp_path / "documents", "--overwrite", "--quiet"),
                   "not a prepared dataset folder")
    assert (tmp_path / "documents" / "thesis.tex").read_text() == "years of work"


# --- data loss: the staging folder ---------------------------------------------------------------------------------


def test_a_symlink_planted_at_the_staging_path_is_refused_and_its_target_kept(download, tmp_path):
    victim = tmp_path / "victim"
    (victim / "data").mkdir(parents=True)
    (victim / "data" / "precious.parquet").write_text("not ours")
    (victim / "keep.txt").write_text("not ours either")
    work = tmp_path / "work"
    work.mkdir()
    (work / ".blemore.incomplete").symlink_to(victim)
    before = snapshot(tmp_path)
    one_line_error(run_cli("prepare", download, work / "blemore", "--quiet"), ".blemore.incomplete", "symlink")
    assert snapshot(tmp_path) == before
    assert not (work / "blemore").exists()


def test_a_staging_folder_the_toolkit_did_not_make_is_not_emptied(download, tmp_path):
    staging = tmp_path / ".blemore.incomplete"
    (staging / "data").mkdir(parents=True)
    (staging / "data" / "someone_elses.parquet").write_text("x")
    staging.chmod(0o700)
    before = snapshot(tmp_path)
    one_line_error(run_cli("prepare", download, tmp_path / "blemore", "--quiet"), "not made by blemore prepare")
    assert snapshot(tmp_path) == before


def test_a_symlinked_data_folder_inside_staging_is_refused(download, tmp_path):
    """Even inside a staging folder of ours, a link where data/ belongs is never followed (or emptied)."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "a.parquet").write_text("not ours")
    out = tmp_path / "work" / "blemore"
    out.parent.mkdir()
    staging = out.parent / ".blemore.incomplete"
    staging.mkdir(mode=0o700)
    (staging / ".blemore-prepare-staging").write_text("format=1\n")
    (staging / "data").symlink_to(victim)
    one_line_error(run_cli("prepare", download, out, "--quiet"), "data", "not a plain folder")
    assert (victim / "a.parquet").read_text() == "not ours"


def test_a_leftover_staging_folder_does_not_load_and_the_rerun_finishes_it(download, tmp_path):
    raw = copy_download(download, tmp_path / "raw")
    broken = raw / "clips" / "A102_mix_ang_hap_30_70_ver1.mov"
    good = broken.read_bytes()
    broken.write_bytes(good[: len(good) // 3])
    out = tmp_path / "blemore"
    staging = tmp_path / ".blemore.incomplete"
    one_line_error(run_cli("prepare", raw, out, "--quiet", "--clips-per-shard", "1", "--workers", "1"),
                   "A102_mix_ang_hap_30_70_ver1")
    assert not out.exists()
    assert list((staging / "data").glob("*.parquet")), "the first shard was expected to be finished in staging"
    with pytest.raises(datasets.exceptions.DataFilesNotFoundError):
        datasets.load_dataset(str(staging))
    broken.write_bytes(good)
    result = run_cli("prepare", raw, out, "--quiet", "--clips-per-shard", "1")
    assert result.returncode == 0 and "1 reused" in result.stdout, result.stderr
    assert not staging.exists() and len(datasets.load_dataset(str(out), split="train")) == 2
    assert not (out / ".blemore-prepare-staging").exists()


# --- two prepares, one OUT -----------------------------------------------------------------------------------------


def test_a_second_prepare_into_the_same_out_is_told_so(download, tmp_path):
    out = tmp_path / "blemore"
    with prepare_lock(out):
        line = one_line_error(run_cli("prepare", download, out, "--quiet"), "another `blemore prepare`")
        assert f"pid {os.getpid()}" in line
    assert not out.exists() and not (tmp_path / ".blemore.lock").exists()
    assert run_cli("prepare", download, out, "--quiet").returncode == 0  # released: the next one runs


def test_two_prepares_started_together_never_both_write(download, tmp_path):
    out = tmp_path / "blemore"
    command = [*BLEMORE_CLI, "prepare", str(download), str(out), "--quiet", "--workers", "1"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = [first.communicate(), second.communicate()]
    codes = sorted([first.returncode, second.returncode])
    stderr = "".join(err for _, err in results)
    assert "Traceback" not in stderr, stderr
    assert codes[0] == 0, stderr
    # the other either found the lock held or, having started after the first finished, OUT already there
    assert codes[1] == 0 or "another `blemore prepare`" in stderr or "already exists" in stderr, stderr
    assert len(datasets.load_dataset(str(out), split="train")) == 2


# --- one line for each bad argument or environment -----------------------------------------------------------------


def test_zero_clips_per_shard_is_one_line(download, tmp_path):
    one_line_error(run_cli("prepare", download, tmp_path / "out", "--clips-per-shard", "0", "--quiet"),
                   "--clips-per-shard 0")
    assert not (tmp_path / "out").exists()


def test_a_parent_that_is_a_file_is_one_line(download, tmp_path):
    (tmp_path / "file").write_text("mine")
    one_line_error(run_cli("prepare", download, tmp_path / "file" / "out", "--quiet"), "file")
    assert (tmp_path / "file").read_text() == "mine"


def test_a_read_only_parent_is_one_line(download, tmp_path):
    import shutil
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="blemore-readonly-"))  # under /tmp: reachable by another user
    try:
        base.chmod(0o755)
        parent = base / "readonly"
        parent.mkdir(mode=0o555)
        parent.chmod(0o555)
        user = None
        if os.geteuid() == 0:  # root writes anywhere: run the command as an ordinary user to see the refusal
            import pwd

            try:
                user = pwd.getpwnam("nobody").pw_uid
            except KeyError:
                pytest.skip("running as root without a 'nobody' user to drop to")
        try:
            result = run_cli("prepare", download, parent / "out", "--quiet", user=user,
                             env={**os.environ, "HF_HOME": str(base / "hf")})
        except PermissionError:  # root, and the interpreter is not reachable by another user
            result = _prepare_into_a_folder_root_cannot_write(download)
            one_line_error(result, "cannot write here")
            return
        one_line_error(result, "readonly", "cannot write here")
        assert list(parent.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _prepare_into_a_folder_root_cannot_write(download):
    """Even root cannot create files in sysfs: the refusal a read-only parent gives, seen as root."""
    try:
        os.close(os.open("/sys/.blemore-probe", os.O_RDWR | os.O_CREAT, 0o600))
        os.unlink("/sys/.blemore-probe")
        pytest.skip("running as root where /sys is writable: no folder to try a read-only parent in")
    except OSError:
        pass
    return run_cli("prepare", download, "/sys/blemore", "--quiet")


def _limit_file_size():
    """A file size limit stands in for a full disk: writes past it fail with an OSError (EFBIG), as ENOSPC would."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (60_000, 60_000))


def test_running_out_of_space_while_writing_is_one_line_and_out_stays_absent(download, tmp_path):
    out = tmp_path / "blemore"
    result = run_cli("prepare", download, out, "--quiet", "--workers", "1", preexec_fn=_limit_file_size)
    one_line_error(result, "cannot write this shard", "File too large")
    assert not out.exists()


# --- the download itself -------------------------------------------------------------------------------------------


def test_a_name_with_two_video_suffixes_is_said_to_be_no_blemore_name(download, tmp_path):
    raw = copy_download(download, tmp_path / "raw")
    clip = raw / "clips" / "A102_ang_int1_ver1.mov"
    clip.rename(clip.with_name("A102_ang_int1_ver1.mov.mp4"))
    line = one_line_error(run_cli("prepare", raw, tmp_path / "out", "--quiet"), "A102_ang_int1_ver1.mov.mp4")
    assert "not a BLEMORE clip name" in line and "no fold" not in line


def test_clips_in_a_symlinked_subfolder_are_found_and_a_loop_is_not_followed(download, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    raw = copy_download(download, tmp_path / "raw")
    (raw / "clips" / "A102_ang_int1_ver1.mov").rename(elsewhere / "A102_ang_int1_ver1.mov")
    (raw / "linked").symlink_to(elsewhere)
    (raw / "clips" / "loop").symlink_to(raw)  # a link back up: followed once, it would find every clip twice
    scan = blemore.scan_download(raw)
    assert sorted(c.clip_id for c in scan.clips) == ["A102_ang_int1_ver1", "A102_mix_ang_hap_30_70_ver1"]
    prepare_dataset(raw, tmp_path / "out", progress=False)
    assert len(datasets.load_dataset(str(tmp_path / "out"), split="train")) == 2


# --- probing clips: valid clips kept, broken ones caught -----------------------------------------------------------


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *map(str, args)], check=True)


def clip_for(tmp_path: Path, name: str, duration_s: float = 2.0) -> blemore.RawClip:
    path = tmp_path / f"source_{name}.mov"
    write_clip(path, ("ang",), (100,), width=64, height=48, duration_s=duration_s, seed=3)
    return path


def raw_clip(path: Path) -> blemore.RawClip:
    return blemore.RawClip("A102_ang_int1_ver1", path, "train", 1, "A102", ("ang",), (100,))


def test_a_variable_frame_rate_clip_stores_its_average_rate(tmp_path):
    source = clip_for(tmp_path, "vfr")
    vfr = tmp_path / "vfr.mov"
    ffmpeg("-i", source, "-vf", "select='lt(n,10)+not(mod(n,3))'", "-fps_mode", "vfr", "-c:a", "copy", vfr)
    media = blemore.read_clip_media(raw_clip(vfr))
    assert media["num_frames"] == 23  # 10 frames, then every third of the other 40
    assert media["fps"] == pytest.approx(media["num_frames"] / media["duration_s"])
    assert media["fps"] < 15  # the header says 25


def test_audio_that_starts_late_but_runs_to_the_end_is_complete(tmp_path):
    source = clip_for(tmp_path, "late")
    late = tmp_path / "late.mov"
    ffmpeg("-i", source, "-itsoffset", "0.5", "-i", source, "-map", "0:v", "-map", "1:a", "-c:v", "copy",
           "-c:a", "aac", "-t", "2.0", late)
    media = blemore.read_clip_media(raw_clip(late))
    assert media["duration_s"] == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("kept", [0.95, 0.97])
def test_a_faststart_clip_cut_short_is_caught_by_its_last_frame(tmp_path, kept):
    source = clip_for(tmp_path, "fs", duration_s=4.0)
    faststart = tmp_path / "fs.mov"
    ffmpeg("-i", source, "-c", "copy", "-movflags", "+faststart", faststart)
    data = faststart.read_bytes()
    cut = tmp_path / "cut.mov"
    cut.write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(blemore.BlemoreError, match=r"A102_ang_int1_ver1: .*cut.mov looks truncated \(its last frame"):
        blemore.read_clip_media(raw_clip(cut))
    assert blemore.read_clip_media(raw_clip(faststart))["num_frames"] == 100  # the whole clip passes


@pytest.mark.parametrize("flags", ["+faststart", ""])
def test_the_index_locates_the_end_of_the_media_and_a_cut_of_a_few_bytes_shows(tmp_path, flags):
    """The check by the index (no decoding): the last sample ends where the media data ends, with the index (moov)
    up front or behind; a faststart clip short of its last 16 bytes is caught though every frame is still listed."""
    source = clip_for(tmp_path, "index", duration_s=4.0)
    clip = tmp_path / "clip.mov"
    ffmpeg("-i", source, "-c", "copy", *(["-movflags", flags] if flags else []), clip)
    data = clip.read_bytes()
    media_end = blemore._indexed_media_end(data)
    if flags:
        assert media_end == len(data)  # mdat comes last
    else:
        assert media_end == data.index(b"moov") - 4  # mdat ends where moov begins
    cut = tmp_path / "cut.mov"
    cut.write_bytes(data[:-16])
    if flags:
        with pytest.raises(blemore.BlemoreError, match=r"cut.mov looks truncated \(its last frames are missing: the "
                                                       r"file ends 16 bytes before"):
            blemore.read_clip_media(raw_clip(cut))


@pytest.mark.parametrize("suffix, flags", [
    (".mov", "frag_keyframe+empty_moov"),                   # every sample in fragments, moov holds none
    (".mov", "frag_keyframe"),                              # the first samples in moov, the rest in fragments
    (".mp4", "frag_keyframe+empty_moov"),
    (".mp4", "frag_keyframe+empty_moov+default_base_moof"),  # data offsets from each moof
])
def test_a_fragmented_clip_is_checked_by_its_fragments_index(tmp_path, suffix, flags):
    """A fragmented MP4/MOV lists its samples in each fragment's track runs (moof/traf/trun): their sizes and data
    offsets say where the media ends, as moov's sample tables do for an unfragmented file; a cut shows."""
    fragmented = tmp_path / f"frag{suffix}"
    ffmpeg("-i", clip_for(tmp_path, "frag", duration_s=4.0), "-c", "copy", "-movflags", flags, fragmented)
    data = fragmented.read_bytes()
    boxes = list(blemore._boxes(data, 0, len(data)))
    last_mdat_end = max(end for kind, _, end in boxes if kind == b"mdat")
    assert blemore._indexed_media_end(data) == last_mdat_end  # the last sample ends where the last mdat ends
    assert blemore._indexed_media_end(b"not a video at all") is None
    blemore.read_clip_media(raw_clip(fragmented))  # the whole clip passes
    for kept in (0.9, 0.5):
        cut = tmp_path / f"cut{suffix}"
        cut.write_bytes(data[: int(len(data) * kept)])
        with pytest.raises(blemore.BlemoreError, match=rf"cut{suffix} looks truncated \(its last frames are missing"):
            blemore.read_clip_media(raw_clip(cut))
    moof = next(start for start, (kind, _, _) in zip([0] + [end for _, _, end in boxes], boxes) if kind == b"moof")
    cut.write_bytes(data[: moof + 20])  # cut inside a fragment's own index: its media is missing as well
    assert blemore._indexed_media_end(cut.read_bytes()) > len(cut.read_bytes())


# --- metadata CSVs as spreadsheets save them -----------------------------------------------------------------------

METADATA_HEADER = ["filename", "video_id", "mix", "emotion_1", "emotion_2", "emotion_1_salience",
                   "emotion_2_salience", "version", "intensity_level", "situation", "fold"]
# fold 3 where the manifest says 1: the scan shows whether the CSV was read
METADATA_ROW = ["A102_ang_int1_ver1", "A102", "0", "ang", "", "", "", "1", "1", "", "3"]
OTHER_ROW = ["A102_mix_ang_hap_30_70_ver1", "A102", "1", "ang", "hap", "30", "70", "1", "", "", "3"]


@pytest.mark.parametrize("encoding, delimiter, header, note", [
    ("utf-8", ",", METADATA_HEADER, None),
    ("utf-8-sig", ",", METADATA_HEADER, None),
    ("latin-1", ",", METADATA_HEADER, "read as cp1252"),
    ("utf-16", ",", METADATA_HEADER, "read as utf-16"),
    ("utf-8", ";", METADATA_HEADER, "';'-separated"),
    ("utf-8", "\t", METADATA_HEADER, "tab-separated"),
    ("utf-8", ",", ["Filename"] + METADATA_HEADER[1:], None),
    ("utf-8", ",", ["filename "] + METADATA_HEADER[1:], None),
])
def test_metadata_csvs_in_the_dialects_a_download_can_have_are_read(download, tmp_path, encoding, delimiter,
                                                                     header, note):
    raw = copy_download(download, tmp_path / "raw")
    comment = "Ångström, café"  # non-ASCII in a column the toolkit does not read
    lines = [delimiter.join(header + ["comment"])] + [delimiter.join(row + [comment])
                                                      for row in (METADATA_ROW, OTHER_ROW)]
    (raw / "metadata.csv").write_bytes(("\r\n".join(lines) + "\r\n").encode(encoding))
    scan = blemore.scan_download(raw)
    assert {c.fold for c in scan.clips} == {3}
    if note:
        assert any("metadata.csv" in n and note in n for n in scan.notes), scan.notes


def test_a_csv_without_a_filename_column_is_skipped_and_said(download, tmp_path):
    raw = copy_download(download, tmp_path / "raw")
    (raw / "notes.csv").write_bytes("name;comment\nx;caf\xe9\n".encode("latin-1"))
    scan = blemore.scan_download(raw)
    assert any("skipped" in n and "notes.csv" in n and "no 'filename' column" in n for n in scan.notes), scan.notes
