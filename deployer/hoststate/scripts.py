"""The remote shell that reads and writes the host state directory.

Each script starts with the lock module's path check (the same refusal of symlinks,
foreign owners and world-writable parents, no extra round trip), which leaves the state
directory's physical path in ``$lock``. Writes take their input on stdin as one blob
whose length is given on the command line: the blob is saved to a temp file first and
used only when it arrived whole, so a connection lost mid-write leaves the previous
state, never a torn record or half an audit line. Records are replaced with ``mv``
(atomic), audit lines and releases are appended under ``flock`` (several operators
may write at once, e.g. ``deployer maintenance`` beside a run).
"""

from __future__ import annotations

import shlex

from deployer.lock import checked_script as _script

# Creates the directory (0700) and its runs/ on the first write.
_PREPARE = r"""
if [ ! -d "$lock" ]; then
  mkdir -m 700 -- "$lock" 2>/dev/null || [ -d "$lock" ] \
    || { echo "cannot create host state directory $lock" >&2; exit 2; }
fi
__lk_existing
[ -d "$lock/runs" ] || mkdir -m 700 -- "$lock/runs" 2>/dev/null || [ -d "$lock/runs" ] \
  || { echo "cannot create $lock/runs" >&2; exit 2; }
"""

# $2 audit bytes, $3 record bytes, $4 release bytes, $5 run id (checked by the caller),
# $6 1: flush the record to disk (the run's last write). Few processes: this runs at
# every step transition.
_WRITE_BODY = r"""
__hs_in=$lock/.in.$BASHPID
cat > "$__hs_in" || exit 2
__hs_n=$(wc -c < "$__hs_in")
if [ "$__hs_n" != $(( $2 + $3 + $4 )) ]; then
  rm -f -- "$__hs_in"; echo TRUNCATED; exit 0
fi
__hs_append() {  # $1 offset, $2 length, $3 file
  exec 9>>"$3"
  command -v flock >/dev/null && flock 9
  if [ "$1" = 0 ]; then head -c "$2" -- "$__hs_in" >&9
  else tail -c +$(( $1 + 1 )) -- "$__hs_in" | head -c "$2" >&9; fi
  exec 9>&-
}
[ "$2" = 0 ] || __hs_append 0 "$2" "$lock/audit.jsonl"
if [ "$3" != 0 ]; then
  __hs_rec=$lock/runs/.$5.$BASHPID
  if [ "$4" = 0 ]; then tail -c "$3" -- "$__hs_in" > "$__hs_rec"
  else tail -c +$(( $2 + 1 )) -- "$__hs_in" | head -c "$3" > "$__hs_rec"; fi
  [ "$6" != 1 ] || sync -- "$__hs_rec" 2>/dev/null || true
  mv -f -- "$__hs_rec" "$lock/runs/$5.json"
  # After the rename: a journal line left by a crash in between is numbered at or
  # below the new record's host_seq and never replayed over it.
  rm -f -- "$lock/runs/$5.journal"
fi
[ "$4" = 0 ] || __hs_append $(( $2 + $3 )) "$4" "$lock/releases.jsonl"
rm -f -- "$__hs_in"
echo "WRITTEN $lock"
# The last release: the next one's number, known without a read of its own.
tail -n 1 -- "$lock/releases.jsonl" 2>/dev/null || true
"""
_WRITE = _PREPARE + _WRITE_BODY

# The same write into a directory an earlier write of this connection checked: $1 is
# its physical path. Still refused (RECHECK: the caller runs the full check) unless it
# is a real directory of ours with its runs/.
_FAST_WRITE = r"""
lock=$1
if [ -L "$lock" ] || [ ! -d "$lock/runs" ] || [ ! -O "$lock" ]; then echo RECHECK; exit 0; fi
""" + _WRITE_BODY

_ABSENT = r"""
if [ "$__lk_absent" = 1 ] || [ ! -d "$lock" ]; then echo EMPTY; exit 0; fi
__lk_existing
"""

# Every record, each followed by a NUL byte (JSON text never holds one), then its
# journal (appended transitions not yet folded into it) and another NUL.
_READ_RUNS = _ABSENT + r"""
echo RUNS
for __hs_f in "$lock"/runs/*.json; do
  [ -f "$__hs_f" ] || continue
  cat -- "$__hs_f"; printf '\0'
  cat -- "${__hs_f%.json}.journal" 2>/dev/null || true; printf '\0'
done
"""

# $2 file name inside the directory, $3 how many lines from the end (0: all).
_READ_LINES = _ABSENT + r"""
echo LINES
[ -f "$lock/$2" ] || exit 0
if [ "$3" = 0 ]; then cat -- "$lock/$2"; else tail -n "$3" -- "$lock/$2"; fi
"""

# $2 run id (checked by the caller).
_READ_RUN = _ABSENT + r"""
echo RUN
cat -- "$lock/runs/$2.json" 2>/dev/null || true
printf '\0'
cat -- "$lock/runs/$2.journal" 2>/dev/null || true
"""

# Appends to a directory an earlier write of this connection checked. Posted, so it
# runs in the agent's own shell (``deployer.ssh.shell.posted_frame``): builtins only, no
# exit, its one variable unset after. Each append is one write(2) of at most
# APPEND_LIMIT bytes with O_APPEND, so it lands whole after any other writer's lines
# without flock.
_APPEND_CHECK = (' [ -L "$__deployer_hs" ] || [ ! -d "$__deployer_hs/runs" ]'
                 ' || [ ! -O "$__deployer_hs" ]')

APPEND_LIMIT = 4000  # bytes of audit lines or journal line an append carries at most


def write_script(path: str, audit: int, record: int, release: int, run_id: str,
                 durable: bool = False, checked: str = "") -> str:
    """Append ``audit`` and ``release`` bytes and replace run ``run_id``'s record
    with ``record`` bytes, all read from stdin in that order. ``checked``: the physical
    path an earlier write checked (the full path check is skipped)."""
    args = [str(audit), str(record), str(release), run_id or "-", "1" if durable else "0"]
    if checked:
        return "set -- " + " ".join(shlex.quote(a) for a in [checked, *args]) + "\n" \
            + _FAST_WRITE
    return _script(_WRITE, path, *args, create=True)


def append_script(checked: str, run_id: str, audit: str, journal_line: str) -> str:
    """Append ``audit`` (JSON lines) to the audit log and ``journal_line`` to run
    ``run_id``'s journal, in the directory whose physical path ``checked`` an earlier
    write checked; prints APPENDED, RECHECK (the directory changed) or FAILED. The
    caller keeps each text within ``APPEND_LIMIT`` bytes."""
    writes = []
    if audit:
        writes.append(f'printf %s {shlex.quote(audit)} >> "$__deployer_hs/audit.jsonl"')
    if journal_line:
        writes.append(f'printf %s {shlex.quote(journal_line)} '
                      f'>> "$__deployer_hs/runs/"{shlex.quote(run_id)}.journal')
    return "\n".join([
        f"__deployer_hs={shlex.quote(checked)}",
        f"if{_APPEND_CHECK}; then echo RECHECK",
        f"elif {' && '.join(writes) or 'true'}; then echo APPENDED",
        "else echo FAILED; fi",
        "unset __deployer_hs",
    ]) + "\n"


def read_runs_script(path: str) -> str:
    return _script(_READ_RUNS, path)


def read_run_script(path: str, run_id: str) -> str:
    return _script(_READ_RUN, path, run_id)


def read_lines_script(path: str, name: str, tail: int = 0) -> str:
    return _script(_READ_LINES, path, name, str(tail))
