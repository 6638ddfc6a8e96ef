"""The bash the remote agent is fed: quoting, one step's code and the frame that starts
it. Pure text in, text (and bytes) out; nothing here talks to a host.

The agent (``AGENT``) is a long-lived ``bash -s`` reading NUL-terminated frames from the
channel's stdin and ``eval``-ing each. A frame (``frame``) starts the step in a
background subshell with its own process group (``set -m``), which prints the start
marker (pid, leader start time, boot id) on stdout and stderr, applies cwd/env, and
``eval``s the script under ``set -e -o pipefail``; stdin comes from a quoted heredoc
with a random delimiter. The agent then ``wait``s and prints the end marker with the
exit code. Script, env values and stdin travel inside the frame (the channel's stdin),
never on a remote argv, so secrets never show in ``ps``.
"""

from __future__ import annotations

import re
import secrets

from deployer.errors import InputError

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# Job control (set -m) puts each backgrounded step in its own process group so a
# timeout can kill all of it.
AGENT = (
    "set +o errexit +o nounset +o pipefail; set -m; __deployer_rc=0\n"
    "while IFS= read -r -d '' __deployer_frame; do eval \"$__deployer_frame\"; done\n"
)

def ansi_c_quote(text: str) -> str:
    """Quote ``text`` as one bash word with no literal newline (``$'...'``), so a whole
    command stays on one line whatever the script holds."""
    out = ["$'"]
    for ch in text:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == "'":
            out.append("\\'")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\x{o:02x}")
        else:
            out.append(ch)
    out.append("'")
    return "".join(out)


def sh_quote(text: str) -> str:
    """POSIX single-quoting (for ``sh -c`` arguments)."""
    return "'" + text.replace("'", "'\\''") + "'"


# A step's code: the bash run inside its subshell, and the text fed to it as a heredoc
# ("" = stdin is /dev/null).
StepCode = tuple[str, str]


def step_code(script: str, cwd: str | None, env: dict[str, str] | None, stdin: str | None,
              sudo: bool, sudo_password: str | None) -> StepCode:
    """The code running one step (as root through sudo when ``sudo``; the password, if
    any, is the first line of the heredoc, never an argument)."""
    _refuse_nul(script, cwd, env, stdin)
    core = _core(script, cwd, env)
    data = stdin
    if data:
        raw = data.encode()
        if not data.endswith("\n"):
            # A heredoc always ends in a newline: cut it off to deliver exact bytes.
            core = f"head -c {len(raw)} | {{ {core}; }}"
            data += "\n"
    feed = data or ""
    if not sudo:
        return core, "" if stdin is None else feed
    # sudo reads the password (if any) and then a random marker; what follows the
    # marker is the step's code, eval-ed by root's bash, then the step's own stdin.
    m1 = secrets.token_hex(16)
    boot = (f'while IFS= read -r l; do [ "$l" = {m1} ] && break; done; '
            f'[ "$l" = {m1} ] || exit 125; IFS= read -r s; unset l; eval "$s"')
    core = "unset s; " + core
    if sudo_password is not None:
        if "\n" in sudo_password:
            raise InputError("the sudo password contains a newline")
        return (f"sudo -S -p '' -- bash -c {sh_quote(boot)} deployer-sudo",
                f"{sudo_password}\n{m1}\n{core}\n{feed}")
    return f"sudo -n -- bash -c {sh_quote(boot)} deployer-sudo", f"{m1}\n{core}\n{feed}"


def _refuse_nul(script: str, cwd: str | None, env: dict[str, str] | None,
                stdin: str | None) -> None:
    texts = [("script", script), ("cwd", cwd or ""), ("stdin", stdin or "")]
    texts += [(f"env {k}", str(v)) for k, v in (env or {}).items()]
    for label, text in texts:
        if "\0" in text:
            raise InputError(f"the {label} of a remote command contains a NUL byte",
                             hint="send binary data with an upload step instead")


def _core(script: str, cwd: str | None, env: dict[str, str] | None) -> str:
    parts = ["set -e -o pipefail"]
    if cwd:
        if cwd == "~" or cwd.startswith("~/"):
            parts.append(f'cd -- "$HOME"{ansi_c_quote(cwd[1:])}')
        else:
            parts.append(f"cd -- {ansi_c_quote(cwd)}")
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise InputError(f"invalid environment variable name {name!r}",
                             hint="use letters, digits and _ (not starting with a digit)")
        parts.append(f"export {name}={ansi_c_quote(str(value))}")
    parts.append(f"eval {ansi_c_quote(script)}")
    return "; ".join(parts)


# The host's clock around each command (a builtin variable: no process), so the time a
# command took on the host is known apart from the network's (framing.end_fields).
_CLOCK = "__deployer_t0=$EPOCHREALTIME; "
_END = ("printf '\\036{token} E %d %s %s\\n' \"$__deployer_rc\" \"$__deployer_t0\" "
        "\"$EPOCHREALTIME\"; printf '\\036{token} E\\n' >&2; unset __deployer_t0\n")


def frame(token: str, code: StepCode) -> bytes:
    """The NUL-terminated frame the agent evals to run ``code``, its markers carrying
    ``token``."""
    inner, feed = code
    # The leader's start time and the boot id identify the group beyond its pid
    # (builtins only: no extra process per step).
    ident = ("__d_s=; __d_b=; { read -r __d_s </proc/$BASHPID/stat; "
             "read -r __d_b </proc/sys/kernel/random/boot_id; } 2>/dev/null; "
             "__d_s=(${__d_s##*) }); ")
    head = (f"( set +m; unset __deployer_frame __deployer_rc; {ident}"
            f"printf '\\036{token} S %s %s %s\\n' \"$BASHPID\" \"${{__d_s[19]:--}}\" "
            f"\"${{__d_b:--}}\"; unset __d_s __d_b; printf '\\036{token} S\\n' >&2; "
            f"{inner} )")
    redirect, body = _stdin(feed)
    start = f"{head}{redirect} &\n{body}"
    end = (f"{{ wait \"$!\"; }} 2>/dev/null; __deployer_rc=$?; {_END.format(token=token)}")
    return (_CLOCK + start + end).encode() + b"\0"


def posted_frame(token: str, script: str, stdin: str | None = None,
                 fork: bool = False) -> bytes:
    """The frame of a posted script (``deployer.ssh.posted``).

    By default it runs in the agent's own shell, not a subshell, because a fork costs
    more than the whole append it carries: ``script`` must then be builtins only and
    leave the shell as it found it (no ``exit``, ``cd``, ``set``, traps; unset its
    variables), and it reads ``/dev/null``. With ``fork`` it runs like a step's code
    (a subshell under ``set -e -o pipefail``, ``stdin`` as a heredoc), in the
    foreground: any script, as long as it ends by itself (no kill channel watches it)."""
    if not fork:
        _refuse_nul(script, None, None, stdin)
        command, body = f"{{ {script}\n}} </dev/null", ""
    else:
        core, feed = step_code(script, None, None, stdin, False, None)
        redirect, body = _stdin(feed)
        command = f"( {core} ){redirect}"
    return (f"{_CLOCK}printf '\\036{token} S -\\n'; printf '\\036{token} S\\n' >&2; "
            f"{command}; __deployer_rc=$?; {_END.format(token=token)}{body}").encode() + b"\0"


def _stdin(feed: str) -> tuple[str, str]:
    """(redirection, lines after the command's line) feeding ``feed``: ``/dev/null``
    for none, else a quoted heredoc whose random delimiter no line of ``feed`` equals
    (its body follows the line holding the redirection)."""
    if feed == "":
        return " </dev/null", ""
    delim = "DEPLOYER_EOF_" + secrets.token_hex(16)
    while f"\n{delim}\n" in f"\n{feed}":
        delim = "DEPLOYER_EOF_" + secrets.token_hex(16)
    body = feed if feed.endswith("\n") else feed + "\n"
    return f" <<'{delim}'", f"{body}{delim}\n"
