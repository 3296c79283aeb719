"""`abgate archive`: the Redis-mode consumer that writes `abgate:events` to the JSONL archive.

Consumer group `abgate-archive`; several archivers may run (distinct consumer names).
For every batch: claim each event id, append the new ones to the archive (fsync), THEN
XACK (and XDEL, so the stream stays small). Nothing acknowledged is lost and nothing is
written twice:

- Dedupe by `event_id` across the whole group: `SET abgate:archived:<event_id>
  <stream entry id> NX` (TTL `DEDUPE_TTL_S`). A replayed copy of an event (the gateway
  re-sends a spooled batch that partly reached Redis) finds the key owned by another
  entry and is acked without being written.
- Crash between claim and write, or between write and XACK: the entry stays pending.
  On restart the archiver re-reads its own pending entries (XREADGROUP id 0) and claims
  dead consumers' ones (XAUTOCLAIM after `claim_idle_ms`). For an entry whose claim it
  already owns it checks the archive itself (files modified since the entry was added)
  and writes the event only if it is not there.
- A consumer name is leased (`abgate:archive:lease:<name>`, refreshed every loop) so two
  live processes never share one; a restarted archiver waits for a dead one's lease
  to expire (at most `lease_s`).

Entries that are not valid events are written to `<state>/rejected/` with the reason,
counted, and acked (never silently dropped, never blocking the stream).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import redis
import structlog

from gateway import events as ev
from gateway.archive import ArchiveWriter, events_dir
from gateway.sinks.redis import STREAM, STREAM_FIELD

log = structlog.get_logger("abgate.archiver")

GROUP = "abgate-archive"
DEDUPE_PREFIX = "abgate:archived:"
LEASE_PREFIX = "abgate:archive:lease:"
DEDUPE_TTL_S = 14 * 24 * 3600
# Archive files modified this long before an entry was added are not searched for it
# (clock skew between the gateway host and this one).
SCAN_MARGIN_S = 120.0


class ArchiverError(RuntimeError):
    pass


class _IdOnly(msgspec.Struct):
    event_id: str = ""


_id_decoder = msgspec.json.Decoder(_IdOnly)


@dataclass
class Stats:
    read: int = 0
    written: int = 0
    duplicates: int = 0
    rejected: int = 0
    recovered: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def _text(value: bytes | str) -> str:
    """A reply as text: redis-py types replies as bytes or str (str with decode_responses)."""
    return value.decode() if isinstance(value, bytes) else value


def _entry_ms(entry_id: bytes | str) -> int:
    return int(_text(entry_id).split("-", 1)[0])


class Archiver:
    def __init__(
        self,
        redis_url: str,
        state_dir: Path,
        *,
        consumer: str | None = None,
        batch: int = 1000,
        block_ms: int = 500,
        claim_idle_ms: int = 60_000,
        lease_s: float = 10.0,
        delete_acked: bool = True,
        timeout_s: float = 5.0,
    ):
        self.r = redis.Redis.from_url(redis_url, socket_timeout=max(timeout_s, block_ms / 1000 + 2),
                                      socket_connect_timeout=timeout_s)
        self.state_dir = Path(state_dir)
        self.consumer = consumer or socket.gethostname()
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.lease_s = lease_s
        self.delete_acked = delete_acked
        self.writer = ArchiveWriter(self.state_dir, writer=f"archive-{self.consumer}")
        self.stats = Stats()
        self._lease_token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._last_autoclaim = 0.0

    # -- setup -------------------------------------------------------------------------------

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def acquire_lease(self, wait_s: float | None = None) -> None:
        """Own the consumer name; wait for a crashed predecessor's lease to lapse."""
        key = LEASE_PREFIX + self.consumer
        deadline = time.monotonic() + (self.lease_s + 1 if wait_s is None else wait_s)
        while True:
            if self.r.set(key, self._lease_token, nx=True, px=int(self.lease_s * 1000)):
                return
            if time.monotonic() >= deadline:
                holder = self.r.get(key)
                raise ArchiverError(
                    f"another archiver is running as consumer {self.consumer!r} ({holder!r}); "
                    "give each archiver its own --consumer name")
            time.sleep(0.2)

    def renew_lease(self) -> None:
        key = LEASE_PREFIX + self.consumer
        holder = self.r.get(key)
        if holder is not None and _text(holder) != self._lease_token:
            raise ArchiverError(f"lost the lease on consumer {self.consumer!r} to {holder!r}")
        self.r.set(key, self._lease_token, px=int(self.lease_s * 1000))

    def release_lease(self) -> None:
        key = LEASE_PREFIX + self.consumer
        try:
            if _text(self.r.get(key) or b"") == self._lease_token:
                self.r.delete(key)
        except redis.RedisError:
            pass

    # -- main loop ---------------------------------------------------------------------------

    def run(self, *, stop: Callable[[], bool] = lambda: False, until_idle: bool = False,
            on_batch: Callable[[Stats], None] | None = None) -> Stats:
        """Consume until `stop()` (or, with `until_idle`, until nothing is pending or new)."""
        self.ensure_group()
        self.acquire_lease()
        backoff = 0.2
        try:
            while not stop():
                try:
                    n = self.step(block=not until_idle)
                    backoff = 0.2
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    log.warning("archiver_redis_unavailable", error=str(exc))
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                except OSError as exc:  # archive unwritable: entries stay pending, retried
                    log.error("archive_unwritable", error=str(exc))
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                if on_batch is not None and n:
                    on_batch(self.stats)
                if until_idle and n == 0:
                    break
        finally:
            self.release_lease()
        return self.stats

    def step(self, block: bool = True) -> int:
        """Handle one batch: own pending entries first, then dead consumers', then new ones."""
        self.renew_lease()
        pending = self._read("0", block=False)
        if pending:
            return self._process(pending, recovering=True)
        now = time.monotonic()
        if now - self._last_autoclaim >= min(self.claim_idle_ms / 1000, 5.0):
            self._last_autoclaim = now
            claimed = self._autoclaim()
            if claimed:
                return self._process(claimed, recovering=True)
        fresh = self._read(">", block=block)
        return self._process(fresh, recovering=False) if fresh else 0

    def _read(self, start: str, block: bool) -> list[tuple[bytes, dict[bytes, bytes]]]:
        resp = self.r.xreadgroup(GROUP, self.consumer, {STREAM: start}, count=self.batch,
                                 block=self.block_ms if block and start == ">" else None)
        if not resp:
            return []
        # RESP2 (the client's protocol) replies [[stream, [(id, fields), ...]]]; RESP3 would be a dict.
        assert isinstance(resp, list), f"unexpected XREADGROUP reply {type(resp).__name__}"
        # Pending entries deleted meanwhile come back with empty fields: just ack them.
        return [(eid, fields or {}) for eid, fields in resp[0][1]]

    def _autoclaim(self) -> list[tuple[bytes, dict[bytes, bytes]]]:
        resp = self.r.xautoclaim(STREAM, GROUP, self.consumer, min_idle_time=self.claim_idle_ms,
                                 start_id="0-0", count=self.batch)
        entries = resp[1] if resp and len(resp) > 1 else []
        return [(eid, fields or {}) for eid, fields in entries if eid is not None]

    # -- one batch ---------------------------------------------------------------------------

    def _process(self, entries: Sequence[tuple[bytes, dict[bytes, bytes]]], recovering: bool) -> int:
        if not entries:
            return 0
        self.stats.read += len(entries)
        if recovering:
            self.stats.recovered += len(entries)
        decoded: list[tuple[bytes, ev.Event, bytes]] = []
        rejects: list[tuple[bytes, bytes, str]] = []
        for eid, fields in entries:
            raw = fields.get(STREAM_FIELD)
            if raw is None:
                if fields:
                    rejects.append((eid, msgspec.json.encode({k.decode(errors="replace"): v.decode(errors="replace")
                                                              for k, v in fields.items()}), "missing field 'e'"))
                continue  # empty = deleted entry (already archived and removed)
            try:
                decoded.append((eid, ev.decode(raw), raw))
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                rejects.append((eid, raw, str(exc)))

        # Claim every event id (one pipeline), keyed to the entry that carries it.
        pipe = self.r.pipeline(transaction=False)
        for eid, event, _ in decoded:
            pipe.set(DEDUPE_PREFIX + event.event_id, eid, nx=True, ex=DEDUPE_TTL_S)
        claimed = pipe.execute() if decoded else []
        lost_claims = [d for d, ok in zip(decoded, claimed, strict=True) if not ok]
        owners: list[bytes | None] = []
        if lost_claims:
            pipe = self.r.pipeline(transaction=False)
            for _, event, _ in lost_claims:
                pipe.get(DEDUPE_PREFIX + event.event_id)
            owners = pipe.execute()
        owner_of = {id(d): o for d, o in zip(lost_claims, owners, strict=True)}

        to_write: list[tuple[bytes, ev.Event, bytes]] = []
        to_check: list[tuple[bytes, ev.Event, bytes]] = []
        for d, ok in zip(decoded, claimed, strict=True):
            if ok:
                to_write.append(d)
            elif owner_of.get(id(d)) == d[0]:
                to_check.append(d)  # our own earlier claim: written before a crash, or not?
            else:
                self.stats.duplicates += 1
        if to_check:
            present = self._archived_ids(min(_entry_ms(d[0]) for d in to_check) / 1000 - SCAN_MARGIN_S)
            for d in to_check:
                if d[1].event_id in present:
                    self.stats.duplicates += 1
                else:
                    to_write.append(d)

        if rejects:
            self._write_rejects(rejects)
        if to_write:
            # Within-batch order as read; the date partition follows each event's ts.
            self.writer.write_lines(((e.ts[:10], raw) for _, e, raw in to_write), fsync=True)
            self.stats.written += len(to_write)
            for _, e, _ in to_write:
                kind = str(type(e).__struct_config__.tag)  # every event kind's tag is a str (gateway.events)
                self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1

        ids = [eid for eid, _ in entries]
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(STREAM, GROUP, *ids)
        if self.delete_acked:
            pipe.xdel(STREAM, *ids)
        pipe.execute()
        return len(entries)

    def _archived_ids(self, since_epoch_s: float) -> set[str]:
        """Event ids in archive files modified at or after `since_epoch_s` (crash recovery only)."""
        found: set[str] = set()
        root = events_dir(self.state_dir)
        if not root.is_dir():
            return found
        for path in root.rglob("*.jsonl"):
            try:
                if path.stat().st_mtime < since_epoch_s:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            for line in data.split(b"\n"):
                if not line:
                    continue
                try:
                    found.add(_id_decoder.decode(line).event_id)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue
        return found

    def _write_rejects(self, rejects: Iterable[tuple[bytes, bytes, str]]) -> None:
        rdir = self.state_dir / "rejected"
        rdir.mkdir(parents=True, exist_ok=True)
        lines = []
        for eid, raw, reason in rejects:
            lines.append(msgspec.json.encode({"stream_id": eid.decode(), "reason": reason,
                                              "raw": raw.decode(errors="replace")}))
            self.stats.rejected += 1
            log.error("archive_rejected_entry", stream_id=eid.decode(), reason=reason)
        with open(rdir / f"archive-{self.consumer}.jsonl", "ab") as f:
            f.write(b"\n".join(lines) + b"\n")
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        self.r.close()
