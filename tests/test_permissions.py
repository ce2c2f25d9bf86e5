"""store/permissions.py: what a hosted lab tightens at start, and what it leaves alone (the browser test
in tests/test_hosted_viewer.py checks the files of a real hosted lab)."""

import os
import stat

from store.permissions import keep_private


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_the_labs_files_lose_group_and_other_bits_and_nothing_else_is_touched(tmp_path):
    before = os.umask(0o022)
    try:
        lab, other = tmp_path / "lab", tmp_path / "elsewhere"
        lab.mkdir(), other.mkdir()
        db = lab / "lab.duckdb"
        db.write_bytes(b"db")
        run = lab / "lab.duckdb.artifacts" / "run-1"
        run.mkdir(parents=True)
        (run / "after-task-1.pt").write_bytes(b"w")
        os.chmod(run / "after-task-1.pt", 0o754)  # owner bits kept as they are
        outside = other / "shared.txt"
        outside.write_text("not the lab's")
        (run / "link.pt").symlink_to(outside)  # chmod would follow it out of the lab
        (lab / "notes.txt").write_text("another file in the folder")

        tightened, failed = keep_private(db)
        assert failed == []
        assert tightened == 4  # the file, the artifacts folder, the run's folder, its weights
        assert mode(db) == 0o600 and mode(run.parent) == 0o700 and mode(run) == 0o700
        assert mode(run / "after-task-1.pt") == 0o700
        assert mode(outside) == 0o644 and mode(lab / "notes.txt") == 0o644
        (lab / "lab.duckdb.wal").write_bytes(b"")  # what the process creates from now on is private
        (lab / "lab.duckdb.optuna").mkdir()
        assert mode(lab / "lab.duckdb.wal") == 0o600 and mode(lab / "lab.duckdb.optuna") == 0o700
    finally:
        os.umask(before)
