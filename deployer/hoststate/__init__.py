"""The host remembers: deployer's state directory on each deployed host.

One directory per app on the host (``~/.local/state/deployer/apps/<app>``, mode 0700,
owned by the SSH user) holds the append-only audit log (``audit.jsonl``), the run
records (``runs/<run-id>.json``) and the releases (``releases.jsonl``), so every
operator and CI runner that reaches the host sees one history. ``layout`` names the
directory, ``scripts`` builds the remote shell, ``records`` is the data written there,
and ``store.HostState`` performs it through any transport with ``run(script, stdin=)``.
"""

from deployer.hoststate.layout import STATE_ROOT, state_dir
from deployer.hoststate.records import AuditEvent, Release
from deployer.hoststate.store import HostState, HostStateError

__all__ = ["STATE_ROOT", "AuditEvent", "HostState", "HostStateError", "Release", "state_dir"]
