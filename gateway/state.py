"""The state directory and the deployment secrets kept in it.

Layout: config/ (versioned router config), events/ (archive), registry.sqlite
(training registry), decisions/ (gate records), evals/, spool/, secrets.json.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = "./.abgate"


def resolve_state_dir(state_dir: str | os.PathLike[str] | None = None) -> Path:
    path = Path(state_dir or os.environ.get("ABGATE_HOME") or DEFAULT_STATE_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Secrets:
    """`id_keys[0]` signs new interaction ids; all of them verify (rotation grace)."""

    id_keys: tuple[tuple[str, bytes], ...]  # (key id, key)
    unit_salt: bytes


def _new_key() -> dict[str, str]:
    return {"kid": secrets.token_hex(4), "key": secrets.token_hex(32)}


def load_secrets(state_dir: Path) -> Secrets:
    """Read `<state>/secrets.json`, creating it once (atomically, race-safe across workers).

    `ABGATE_ID_SECRETS` (comma-separated, newest first) overrides the signing keys and
    `ABGATE_UNIT_SALT` the unit salt, for deployments whose replicas share no disk.
    """
    path = state_dir / "secrets.json"
    if not path.exists():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"id_keys": [_new_key()], "unit_salt": secrets.token_hex(16)}))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # fails if another process won the race; theirs stands
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    data = json.loads(path.read_text())
    keys = tuple((k["kid"], bytes.fromhex(k["key"])) for k in data["id_keys"])
    salt = bytes.fromhex(data["unit_salt"])
    env_keys = os.environ.get("ABGATE_ID_SECRETS")
    if env_keys:
        keys = tuple((f"env{i}", k.strip().encode()) for i, k in enumerate(env_keys.split(",")) if k.strip())
    env_salt = os.environ.get("ABGATE_UNIT_SALT")
    if env_salt:
        salt = env_salt.encode()
    return Secrets(id_keys=keys, unit_salt=salt)


def rotate_id_key(state_dir: Path, keep: int = 2) -> str:
    """Add a new signing key in front; keep the newest `keep` keys so old ids verify for a while."""
    load_secrets(state_dir)
    path = state_dir / "secrets.json"
    data = json.loads(path.read_text())
    new = _new_key()
    data["id_keys"] = [new, *data["id_keys"]][:keep]
    tmp = path.with_suffix(".rotate.tmp")
    tmp.write_text(json.dumps(data))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return new["kid"]
