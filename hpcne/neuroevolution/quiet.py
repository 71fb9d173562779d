"""Keep the noise of environment libraries out of training logs (MuJoCo's model warnings, SDL's)."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from typing import Any

__all__ = ["quiet_env_libraries"]

_MUJOCO_HOOKED = False


def quiet_env_libraries(env: Any, *, rendering: bool = False) -> None:
    """Prepare the process before an environment of ``env`` (an id or a factory) is created.

    - MuJoCo: a model compiled with deprecated attributes (HalfCheetah's ``settotalmass``) prints a
      warning per environment and appends it to ``MUJOCO_LOG.TXT`` in the working directory. Its
      deprecation notes are dropped; any other MuJoCo warning (an unstable simulation, for example)
      is printed once per message as ``hpcne: warning: MuJoCo: ...`` and no log file is written.
    - SDL (pygame, which renders the classic-control environments) prints ``error: XDG_RUNTIME_DIR
      is invalid`` when that variable names no usable folder, although it renders fine: such a value
      is replaced, in this process, by a private temporary folder.
    """
    if _uses_mujoco(env):
        _hook_mujoco_warnings()
    if rendering:
        runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
        if runtime_dir is not None and not (os.path.isdir(runtime_dir) and os.access(runtime_dir, os.W_OK)):
            private = tempfile.mkdtemp(prefix="hpcne-xdg-")  # mode 0700, as SDL wants
            atexit.register(shutil.rmtree, private, ignore_errors=True)
            os.environ["XDG_RUNTIME_DIR"] = private


def _uses_mujoco(env: Any) -> bool:
    if "mujoco" in sys.modules:
        return True
    if not isinstance(env, str):
        return False
    import gymnasium

    try:
        entry_point = gymnasium.spec(env).entry_point
    except gymnasium.error.Error:  # an unknown id: gymnasium.make reports it
        return False
    return "mujoco" in str(entry_point)


def _hook_mujoco_warnings() -> None:
    global _MUJOCO_HOOKED
    if _MUJOCO_HOOKED:
        return
    try:
        import mujoco
    except ImportError:  # gymnasium reports the missing package when it makes the environment
        return
    seen: set[str] = set()

    def warn(message: str) -> None:
        if "deprecated" in message or message in seen:
            return
        seen.add(message)
        print(f"hpcne: warning: MuJoCo: {message.strip()}", file=sys.stderr, flush=True)

    mujoco.set_mju_user_warning(warn)
    _MUJOCO_HOOKED = True
