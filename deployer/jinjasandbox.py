"""The Jinja sandbox every deployer template renders in, with bounded rendering.

Runbooks, ``templates/`` files, inventory and vars files are untrusted input: a plan
of someone else's change (a pull request, a CI job planning every PR) must not run
code on the reviewer's machine. Every template is therefore rendered in a subclass of
Jinja's ``ImmutableSandboxedEnvironment``: attributes starting with ``_`` and Python
internals (``__globals__``, ``__subclasses__``, ``gi_frame``...) are refused, and so are
the methods that change a list, dict or set. Such an access raises Jinja's
``SecurityError``, which ``deployer.templating`` reports as an ``InputError`` naming
the file, the field and the line.

Rendering is bounded, so a template cannot make ``plan`` hang or exhaust memory:

- ``range`` yields at most ``RenderLimits.max_range`` items;
- all loops of one render together run at most ``max_iterations`` times;
- one render produces at most ``max_output`` characters (streamed and counted), and
  no single value built while rendering (a filter's or a call's result, a string or
  list repeated with ``*``, a ``%`` or ``format`` width, a namespace attribute) may
  exceed it; the arguments that would make one (``center(10**9)``) are refused
  before the work is done;
- an integer built with ``*`` or ``**`` has at most ``max_int_bits`` bits;
- one render takes at most ``max_seconds``: the clock is checked on every call,
  attribute look-up, filter, loop iteration and output chunk.

Breaking a limit raises ``RenderLimitError`` (message and fix, never the value).

Globals: ``range`` (bounded), ``dict``, ``cycler``, ``joiner`` and ``namespace``
(whose attributes are bounded too). ``lipsum`` is removed: random text has no place
in a reviewable plan, and its size argument loops unchecked inside Jinja.

The limits are per render (one runbook value, one template file with what it
includes); a render nested in another (a variable holding Jinja, used by a template)
shares its budget. They live in the module attribute ``LIMITS`` so a test can lower
them.
"""

from __future__ import annotations

import functools
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import Cycler, Joiner, Namespace

__all__ = ["LIMITS", "RenderLimitError", "RenderLimits", "SandboxedEnvironment",
           "SecurityError", "UNSAFE_HINT", "budget"]


@dataclass(frozen=True)
class RenderLimits:
    """What one render may use."""

    max_range: int = 10_000
    max_iterations: int = 1_000_000
    max_output: int = 4 * 1024 * 1024  # characters
    max_seconds: float = 5.0
    max_int_bits: int = 100_000


LIMITS = RenderLimits()

UNSAFE_HINT = ("a template may only read values (variables, secrets, host, runbook) and "
               "use filters; attributes starting with `_`, Python internals and methods "
               "that change a list or dict are not available: remove that expression")


class RenderLimitError(Exception):
    """A render went past one of ``RenderLimits``; the message names the limit."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint or (
            "make the template smaller: a render may use ranges of "
            f"{LIMITS.max_range:,} items, {LIMITS.max_iterations:,} loop iterations, "
            f"{_chars(LIMITS.max_output)} of output and {LIMITS.max_seconds:g} s")


def _chars(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MiB"
    return f"{n:,} characters"


# ------------------------------------------------------------------------- budget

class _Budget:
    __slots__ = ("limits", "deadline", "iterations")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.iterations = 0


_LOCAL = threading.local()


class budget:
    """Context manager around one render: starts the clock and the loop count, or
    joins the render already running in this thread (a variable rendered on use)."""

    __slots__ = ("_own",)

    def __enter__(self) -> None:
        self._own = getattr(_LOCAL, "budget", None) is None
        if self._own:
            _LOCAL.budget = _Budget(LIMITS)

    def __exit__(self, *exc: object) -> None:
        if self._own:
            _LOCAL.budget = None


def _tick() -> None:
    b = getattr(_LOCAL, "budget", None)
    if b is not None and time.monotonic() > b.deadline:
        raise RenderLimitError(f"rendering took longer than {b.limits.max_seconds:g} s "
                               "(the limit per value or template)")


def _limits() -> RenderLimits:
    b = getattr(_LOCAL, "budget", None)
    return b.limits if b is not None else LIMITS


def collect(chunks: Iterable[str]) -> str:
    """The rendered text of a template's output stream, stopped past ``max_output``."""
    limit = _limits().max_output
    out: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RenderLimitError(f"the rendered text is larger than {_chars(limit)} "
                                   "(the limit)")
        out.append(chunk)
        _tick()
    return "".join(out)


# ---------------------------------------------------------------------- size checks

_CONTAINERS = (list, tuple, set, frozenset, dict)
_TEXT = (str, bytes)


def _size(value: Any, limit: int) -> int:
    """The characters and items ``value`` prints as (nested lists and dicts counted
    as printed: a part shared by several parents counts once per use); counting
    stops past ``limit``. A part shared many times is measured once, so a list that
    doubles with each nesting level costs as many steps as it has levels."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if not isinstance(value, _CONTAINERS):
        return 0
    memo: dict[int, int] = {}

    def add(total: int, items: Iterable[Any]) -> int:
        kinds = set(map(type, items))  # at C speed: most lists hold only scalars
        if not any(issubclass(k, _TEXT + _CONTAINERS) for k in kinds):
            return total
        if all(issubclass(k, _TEXT) for k in kinds):
            return total + sum(map(len, items))
        for item in items:
            if total > limit:
                break
            if isinstance(item, _TEXT):
                total += len(item)
            elif isinstance(item, _CONTAINERS):
                total += walk(item)
        return total

    def walk(node: Any) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        # each item prints as at least one character and a ", " (a lower bound that
        # refuses a list of millions of numbers without visiting them)
        total = 3 * len(node)
        if total <= limit:
            if isinstance(node, dict):
                # dict's own views: a LazyVars mapping must not render its values here
                total = add(add(total, dict.keys(node)), dict.values(node))
            else:
                total = add(total, node)
        memo[key] = total
        return total

    return walk(value)


def _check_size(value: Any, what: str) -> None:
    limit = _limits().max_output
    if _size(value, limit) > limit:
        raise RenderLimitError(f"{what} would be larger than {_chars(limit)} (the limit)")


def _check_width(n: Any, what: str) -> None:
    limit = _limits().max_output
    if isinstance(n, int) and not isinstance(n, bool) and n > limit:
        raise RenderLimitError(f"{what} {n:,} is larger than {_chars(limit)} (the limit)")


def _check_estimate(estimate: int, what: str) -> None:
    limit = _limits().max_output
    if estimate > limit:
        raise RenderLimitError(f"{what} would be larger than {_chars(limit)} (the limit)")


def _check_int_bits(bits: int, what: str) -> None:
    limit = _limits().max_int_bits
    if bits > limit:
        raise RenderLimitError(f"{what} would have over {limit:,} bits (the limit)")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_SPEC = re.compile(r"\{[^{}]*?:[^{}\d]*(\d+)?(?:[,_]?\.(\d+))?[^{}]*\}")


def _check_format(fmt: Any, args: Iterable[Any], style: str) -> None:
    """Widths and precisions in a ``%`` or ``str.format`` format string, and integer
    arguments (a ``*`` or ``{}`` width), within ``max_output``."""
    if not isinstance(fmt, str):
        return
    pattern = _PERCENT_SPEC if style == "%" else _FORMAT_SPEC
    for match in pattern.finditer(fmt):
        for group in match.groups():
            if group and group.isdigit():
                _check_width(int(group), "a format width")
    if ("*" in fmt) if style == "%" else ("{" in fmt):
        for arg in args:
            _check_width(arg, "a format width")


def _len_or_none(value: Any) -> int | None:
    try:
        return len(value)
    except TypeError:
        return None


def _replace_estimate(text: str, old: Any, new: Any, count: Any = -1) -> int:
    if not isinstance(old, str) or not isinstance(new, str):
        return len(text)
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(0, len(new) - len(old))


# Python string methods whose arguments can make a result much larger than the string.
def _check_str_method(text: str, name: str, args: tuple, kwargs: dict) -> None:
    what = f"str.{name}()"
    if name in ("ljust", "rjust", "center", "zfill"):
        for arg in (*args, *kwargs.values()):
            _check_width(arg, f"the width of {what}")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _check_estimate(len(text) + text.count("\t") * size, f"the result of {what}")
    elif name == "replace":
        _check_estimate(_replace_estimate(text, *args[:3], **kwargs), f"the result of {what}")
    elif name == "join" and args:
        n = _len_or_none(args[0])
        if n is not None:
            _check_estimate(n * len(text), f"the result of {what}")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((_size(v, _limits().max_output) for v in dict.values(args[0])),
                      default=1)
        _check_estimate(len(text) * max(1, longest), f"the result of {what}")
    elif name in ("format", "format_map"):
        values = list(args) + list(kwargs.values())
        if name == "format_map" and args and isinstance(args[0], dict):
            values = list(dict.values(args[0]))
        _check_format(text, values, "{}")


# ------------------------------------------------------------------------- filters

def _arguments(func: Any, args: tuple) -> tuple:
    """The filter's arguments without the context/environment Jinja passes first."""
    return args[1:] if getattr(func, "jinja_pass_arg", None) is not None else args


def _pre_center(value: Any, width: Any = 80) -> None:
    _check_width(width, "the width of `center`")


def _pre_indent(value: Any, width: Any = 4, *rest: Any, **kw: Any) -> None:
    width = kw.get("width", width)
    lines = str(value).count("\n") + 1
    if isinstance(width, str):
        _check_estimate(len(str(value)) + lines * len(width), "the result of `indent`")
    else:
        _check_width(width, "the width of `indent`")
        if isinstance(width, int):
            _check_estimate(len(str(value)) + lines * width, "the result of `indent`")


def _pre_batch(value: Any, linecount: Any = 1, *rest: Any, **kw: Any) -> None:
    _check_width(kw.get("linecount", linecount), "the size of `batch`")


def _pre_slice(value: Any, slices: Any = 1, *rest: Any, **kw: Any) -> None:
    slices = kw.get("slices", slices)
    if isinstance(slices, int) and slices > _limits().max_range:
        raise RenderLimitError(f"`slice` into {slices:,} parts is over the limit of "
                               f"{_limits().max_range:,}")


def _pre_wordwrap(value: Any, width: Any = 79, break_long_words: Any = True,
                  wrapstring: Any = None, *rest: Any, **kw: Any) -> None:
    width = kw.get("width", width)
    wrapstring = kw.get("wrapstring", wrapstring) or "\n"
    text = str(value)
    if isinstance(width, int) and width > 0 and isinstance(wrapstring, str):
        _check_estimate(len(text) + (len(text) // width + 1) * len(wrapstring),
                        "the result of `wordwrap`")


def _pre_replace(value: Any, old: Any = "", new: Any = "", count: Any = None,
                 *rest: Any) -> None:
    _check_estimate(_replace_estimate(str(value), old, new,
                                      -1 if count is None else count),
                    "the result of `replace`")


def _pre_join(value: Any, d: Any = "", *rest: Any, **kw: Any) -> None:
    d = kw.get("d", d)
    n = _len_or_none(value)
    if n is not None and isinstance(d, str):
        _check_estimate(n * len(d), "the result of `join`")


def _pre_format(value: Any, *args: Any, **kwargs: Any) -> None:
    _check_format(value, list(args) + list(kwargs.values()), "%")


_FILTER_CHECKS: dict[str, Callable[..., None]] = {
    "center": _pre_center, "indent": _pre_indent, "batch": _pre_batch, "slice": _pre_slice,
    "wordwrap": _pre_wordwrap, "replace": _pre_replace, "join": _pre_join,
    "format": _pre_format}


def guard_filter(name: str, func: Any) -> Any:
    """``func`` checked against the limits: its input (a list built to print
    exponentially), its arguments (a width of 10**9) and its result."""
    pre = _FILTER_CHECKS.get(name)

    @functools.wraps(func)  # keeps jinja_pass_arg, so Jinja passes the same first argument
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        own = _arguments(func, args)
        for arg in (*own, *kwargs.values()):
            _check_size(arg, f"the input of filter `{name}`")
        if own and pre is not None:
            pre(*own, **kwargs)
        result = func(*args, **kwargs)
        _check_size(result, f"the result of filter `{name}`")
        return result

    return guarded


# --------------------------------------------------------------------------- globals

def bounded_range(*args: int) -> range:
    """``range`` of at most ``max_range`` items."""
    rng = range(*args)
    limit = _limits().max_range
    if len(rng) > limit:
        raise RenderLimitError(f"range({', '.join(map(str, args))}) has {len(rng):,} items; "
                               f"the limit is {limit:,}")
    return rng


class BoundedNamespace(Namespace):
    """``namespace()`` whose attributes stay within ``max_output``: a loop doubling
    ``ns.text`` would otherwise grow it without bound before anything is printed."""

    def __setitem__(self, name: str, value: Any) -> None:
        _check_size(value, f"namespace attribute `{name}`")
        super().__setitem__(name, value)


# ------------------------------------------------------------------------ environment

class _BoundedCodeGenerator(CodeGenerator):
    """Compiles every ``{% for %}`` to iterate through ``environment.bounded_iter``,
    which counts iterations and checks the clock: a loop with an empty body makes no
    call or output that the other checks would see."""

    def visit_For(self, node: nodes.For, frame: Any) -> None:  # noqa: N802 - Jinja's name
        if not getattr(node, "_deployer_bounded", False):
            node.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter",
                                                              lineno=node.lineno),
                                   [node.iter], [], None, None, lineno=node.lineno)
            # a mark of ours on Jinja's node class, which declares no such attribute
            node._deployer_bounded = True  # type: ignore[attr-defined]
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:  # noqa: N802
        # `a ~ b` str()s its operands: each is checked first, as a printed value is
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}((")
        for arg in node.nodes:
            self.write("environment.finalize(")
            self.visit(arg, frame)
            self.write("), ")
        self.write("))")


def _finalize(value: Any) -> Any:
    # every `{{ }}` output: a value that prints larger than the output limit (a list
    # nested by repeated `set`) is refused before str() builds it
    if not isinstance(value, str):
        _check_size(value, "a printed value")
    return value


class SandboxedEnvironment(ImmutableSandboxedEnvironment):
    """``ImmutableSandboxedEnvironment`` with the limits of ``RenderLimits``."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "%"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(finalize=_finalize, **kwargs)
        self.globals.pop("lipsum", None)
        self.globals.update(range=bounded_range, dict=dict, cycler=Cycler, joiner=Joiner,
                            namespace=BoundedNamespace)
        self.filters = {name: guard_filter(name, func) for name, func in self.filters.items()}

    def add_filter(self, name: str, func: Any) -> None:
        """Register a filter behind the same checks as Jinja's own."""
        self.filters[name] = guard_filter(name, func)

    def bounded_iter(self, iterable: Any) -> Iterator[Any]:
        b = getattr(_LOCAL, "budget", None)
        if b is None:
            yield from iterable
            return
        limit = b.limits.max_iterations
        for item in iterable:
            b.iterations += 1
            if b.iterations > limit:
                raise RenderLimitError(f"loops ran more than {limit:,} times in one render "
                                       "(the limit)")
            if not b.iterations & 255:
                _tick()
            yield item

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int):
                    _check_estimate(len(seq) * n, "a repeated string or list")
            if isinstance(left, int) and isinstance(right, int):
                _check_int_bits(abs(left).bit_length() + abs(right).bit_length(),
                                "a product")
        elif operator == "**":
            if (isinstance(left, int) and isinstance(right, int) and right > 0
                    and abs(left) > 1):
                _check_int_bits(right * abs(left).bit_length(), "a power")
        elif operator == "%" and isinstance(left, str):
            _check_size(right, "a value formatted with `%`")
            values = right if isinstance(right, tuple) else (right,)
            _check_format(left, values, "%")
        result = super().call_binop(context, operator, left, right)
        _check_size(result, f"the result of `{operator}`")
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any,  # noqa: N805 - as Jinja's
             **kwargs: Any) -> Any:
        _tick()
        for arg in (*args, *kwargs.values()):
            _check_size(arg, "an argument of a call")
        target = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str):
            _check_str_method(owner, getattr(target, "__name__", ""), args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _check_size(result, "the result of a call")
        return result
