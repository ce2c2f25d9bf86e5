"""CL Lab's engine: configs, scenarios, models, strategies, training and the run manager.
Nothing here imports Streamlit."""

import functools

__version__ = "0.1.0"


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The code that runs: ``0.1.0+git.<commit>`` in a git checkout (``.dirty`` when tracked files
    differ from that commit), else the package version. Runs record it, so a run's report names the
    exact code that trained it; a version number alone does not change between commits."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):  # no git, or not a checkout (an installed copy)
        return __version__
    return f"{__version__}+git.{commit}" + (".dirty" if dirty else "")
