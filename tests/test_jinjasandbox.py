"""deployer.jinjasandbox through the one renderer (templating.StepContext): template
injection never runs code, and rendering is bounded (range, loops, output, values,
time), each refusal an InputError naming the field, the line and the limit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import deployer.jinjasandbox as sandbox
from deployer.errors import InputError, Position
from deployer.models import Host, Runbook, Step, StepBody
from deployer.templating import make_context


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "ran"


def context(project: Path | None = None, variables: dict | None = None):
    rb = Runbook(name="t", path="runbooks/t.yml")
    step = Step(id="s", name="s", body=StepBody("run", {"command": "x"}),
                position=Position("runbooks/t.yml", 7, 5))
    return make_context(rb, Host(name="h", address="127.0.0.1"),
                        {"x": "hi", "l": [1, 2], "d": {"k": "v"}, **(variables or {})},
                        {"db_password": "<secret:db_password>"}, {}, step, planning=True,
                        project_dir=str(project or "."))


def render_error(text: str, **kw) -> str:
    with pytest.raises(InputError) as info:
        context(**kw).render(text, "run.command")
    (problem,) = info.value.problems
    return str(problem)


# Each one runs `touch MARKER` in an unsandboxed Jinja (or reaches os / subclasses).
PAYLOADS = [
    "{{ lipsum.__globals__['os'].popen('touch MARKER').read() }}",
    "{{ lipsum.__globals__.os.popen('touch MARKER').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ x.__class__.__base__.__subclasses__() }}",
    "{{ self.__init__.__globals__.__builtins__.__import__('os').popen('touch MARKER') }}",
    "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch MARKER') }}",
    "{{ cycler.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('touch MARKER').read() }}",
    "{{ range.__globals__['os'].popen('touch MARKER') }}",
    "{{ config.__class__.__init__.__globals__['os'].popen('touch MARKER').read() }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('touch MARKER') }}",
    "{{ (x|attr('__class__')).__mro__ }}",
    "{{ x|attr('__class__')|attr('__base__')|attr('__subclasses__') }}",
    "{{ '{0.__class__.__base__}'.format(x) }}",
    "{{ (l|map(attribute='__class__')|first).__subclasses__() }}",
    "{% set c = x.__class__ %}{{ c }}",
    "{{ x['__class__'] }}",
    "{{ secrets.__class__.__init__.__globals__ }}",
    "{{ l.append(1) }}{{ l }}",
    "{{ d.update(k='w') }}",
    "{{ dict(a=1).clear() }}",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_template_injection_is_refused_and_runs_nothing(payload: str, marker: Path) -> None:
    message = render_error(payload.replace("MARKER", str(marker)))
    assert not marker.exists()
    assert "runbooks/t.yml:7:5" in message and "step `s` run.command" in message
    assert ("unsafe template (line 1 of the value)" in message
            or "undefined variable" in message or "undefined value" in message
            or "`lipsum` is not available" in message), message
    assert "(fix: " in message


def test_unsafe_access_names_the_line_in_the_value_and_the_fix() -> None:
    message = render_error("a\n{% if true %}\n{{ x.__class__ }}\n{% endif %}")
    assert "unsafe template (line 3 of the value): access to attribute '__class__' of " \
        "'str' object is unsafe" in message
    assert "fix: a template may only read values" in message


def test_unsafe_access_in_a_template_file_names_file_and_line(tmp_path: Path,
                                                              marker: Path) -> None:
    tdir = tmp_path / "templates"
    tdir.mkdir()
    (tdir / "part.j2").write_text("ok\n\n{{ cycler.__init__.__globals__.os.popen("
                                  f"'touch {marker}') }}}}\n")
    (tdir / "main.j2").write_text("first line\n{% include 'part.j2' %}\n")
    with pytest.raises(InputError) as info:
        context(tmp_path).template("main.j2")
    message = str(info.value.problems[0])
    assert "unsafe template (templates/part.j2 line 3)" in message, message
    assert "template main.j2" in message and "runbooks/t.yml:7:5" in message
    assert not marker.exists()


def test_what_templates_do_still_renders() -> None:
    ctx = context()
    text = ("{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }} {{ x|upper|center(6) }} {{ l|join(',') }} "
            "{{ '%03d'|format(7) }} {{ '{:>3}'.format('a') }} {{ 2 ** 10 }} {{ 'ab' * 2 }} "
            "{{ d.items()|list }} {{ d.k }} {{ secrets.db_password|quote }} "
            "{% set c = cycler('a', 'b') %}{{ c.next() }}{{ c.next() }} "
            "{% set j = joiner('+') %}{% for v in l %}{{ j() }}{{ v }}{% endfor %} "
            "{{ dict(a=1)|to_json }} {% for v in l %}{{ loop.index }}/{{ loop.length }}"
            "{% endfor %} {{ x ~ '!' }} {{ range(3)|list }}")
    assert ctx.render(text, "run.command") == (
        "3   HI   1,2 007   a 1024 abab [('k', 'v')] v '<secret:db_password>' ab 1+2 "
        '{"a": 1} 1/22/2 hi! [0, 1, 2]')


def test_lipsum_is_not_available() -> None:
    message = render_error("{{ lipsum(2) }}")
    assert "`lipsum` is not available in deployer templates" in message
    assert "fix: a plan must be reproducible" in message


# ----------------------------------------------------------------------------- limits

@pytest.mark.parametrize("text, needle", [
    ("{% for i in range(10**9) %}{% endfor %}",
     "range(1000000000) has 1,000,000,000 items; the limit is 10,000"),
    ("{{ range(20000)|list|length }}", "the limit is 10,000"),
    ("{{ 'a' * 10**9 }}", "a repeated string or list would be larger than 4 MiB"),
    ("{{ [1, 2] * 10**8 }}", "a repeated string or list would be larger than 4 MiB"),
    ("{{ 10 ** (10 ** 9) }}", "a power would have over 100,000 bits"),
    ("{{ 'x'|center(10**9) }}", "the width of `center` 1,000,000,000"),
    ("{{ 'x'|indent(10**9) }}", "the width of `indent` 1,000,000,000"),
    ("{{ '%999999999d' % 1 }}", "a format width 999,999,999"),
    ("{{ '%*d' % (10**9, 1) }}", "a format width 1,000,000,000"),
    ("{{ '%999999999d'|format(1) }}", "a format width 999,999,999"),
    ("{{ '{:>999999999}'.format(1) }}", "a format width 999,999,999"),
    ("{{ 'x'.ljust(10**9) }}", "the width of str.ljust() 1,000,000,000"),
    ("{{ ('\t' * 1000).expandtabs(100000) }}", "the result of str.expandtabs()"),
    ("{{ ('x' * 1000)|replace('', 'y' * 10000) }}", "the result of `replace` would be"),
    ("{{ ('x' * 1000).replace('x', 'y' * 10000) }}", "the result of str.replace()"),
    ("{{ range(10000)|join('y' * 10000) }}", "the result of `join` would be"),
    ("{{ [1]|batch(10**9, 'x')|list }}", "the size of `batch` 1,000,000,000"),
    ("{{ [1]|slice(10**8, 'x')|list }}", "`slice` into 100,000,000 parts"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}"
     "{% endfor %}", "namespace attribute `s` would be larger than 4 MiB"),
    ("{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = ns.l + ns.l %}"
     "{% endfor %}", "namespace attribute `l` would be larger than 4 MiB"),
    ("{% set a0 = ['x'] %}" + "".join(f"{{% set a{i + 1} = [a{i}, a{i}] %}}"
                                      for i in range(40)) + "{{ a40 }}",
     "a printed value would be larger than 4 MiB"),
    ("{% set a0 = ['x'] %}" + "".join(f"{{% set a{i + 1} = [a{i}, a{i}] %}}"
                                      for i in range(40)) + "{{ a40 ~ '' }}",
     "a printed value would be larger than 4 MiB"),
    ("{% set a0 = ['x'] %}" + "".join(f"{{% set a{i + 1} = [a{i}, a{i}] %}}"
                                      for i in range(40)) + "{{ a40|tojson }}",
     "the input of filter `tojson` would be larger than 4 MiB"),
    ("{% macro d(s) %}{{ s }}{{ s }}{% endmacro %}" + "{{ " + "d(" * 24 + "'abcd'"
     + ")" * 24 + " }}", "the result of a call would be larger than 4 MiB"),
])
def test_amplification_is_refused_before_it_is_built(text: str, needle: str) -> None:
    message = render_error(text)
    assert needle in message, message
    assert "runbooks/t.yml:7:5" in message and "(line 1 of the value)" in message
    assert "fix: make the template smaller" in message


@pytest.fixture
def small_limits(monkeypatch: pytest.MonkeyPatch):
    def set_limits(**kw) -> None:
        monkeypatch.setattr(sandbox, "LIMITS", dataclasses.replace(sandbox.LIMITS, **kw))
    return set_limits


def test_loop_iterations_are_bounded_even_with_an_empty_body(small_limits) -> None:
    small_limits(max_iterations=5000)
    message = render_error("{% for i in range(100) %}{% for j in range(100) %}{% endfor %}"
                           "{% endfor %}")
    assert "loops ran more than 5,000 times in one render (the limit)" in message
    # the same count over several loops and nested renders; below it, all is fine
    assert context().render("{% for i in range(40) %}{% for j in range(100) %}{% endfor %}"
                            "{% endfor %}done", "run.command") == "done"


def test_output_is_bounded_while_it_streams(small_limits) -> None:
    small_limits(max_output=1000)
    message = render_error("{% for i in range(10000) %}{{ i }}{% endfor %}")
    assert "the rendered text is larger than 1,000 characters (the limit)" in message
    assert "fix: make the template smaller" in message


def test_render_time_is_bounded(small_limits) -> None:
    small_limits(max_seconds=0.05)
    # ~10**8 iterations: hours without the deadline
    message = render_error("{% for i in range(10000) %}{% for j in range(10000) %}{{ j }}"
                           "{% endfor %}{% endfor %}")
    assert "rendering took longer than 0.05 s" in message
    # exponential recursion with no loop and no output: the clock is checked on calls
    message = render_error("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}"
                           "{% endmacro %}{{ f(40) }}")
    assert "rendering took longer than 0.05 s" in message


def test_a_variable_rendered_inside_a_template_shares_its_budget(small_limits) -> None:
    small_limits(max_iterations=150)
    ctx = context(variables={"inner": "{% for i in range(100) %}{% endfor %}in"})
    message = None
    with pytest.raises(InputError) as info:
        ctx.render("{% for i in range(100) %}{% endfor %}{{ inner }}", "run.command")
    message = str(info.value.problems[0])
    assert "loops ran more than 150 times" in message
