"""deployer.templating.secret_use on its own: which template files can read a secret."""

from __future__ import annotations

import jinja2

from deployer.templating.secret_use import template_reads_secrets


def _env(templates: dict[str, str]) -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.DictLoader(templates))


def test_includes_that_loop_and_missing_templates_end_the_walk() -> None:
    env = _env({"a.j2": "{% include 'b.j2' %}", "b.j2": "{% include 'a.j2' %}{{ x }}",
                "c.j2": "{% include 'gone.j2' %}{{ y }}"})
    assert not template_reads_secrets(env, {"x": "plain"}, "a.j2")
    assert template_reads_secrets(env, {"x": "{{ secrets.k }}"}, "a.j2")
    assert not template_reads_secrets(env, {}, "c.j2")
    assert not template_reads_secrets(env, {}, "missing.j2")


def test_variables_are_followed_through_lists_mappings_and_cycles() -> None:
    env = _env({"t.j2": "{{ conf }}"})
    raw = {"conf": {"urls": ["http://{{ a }}"]}, "a": "{{ b }}", "b": "{{ a }}{{ c }}",
           "c": "{{ secrets.pw | upper }}"}
    assert template_reads_secrets(env, raw, "t.j2")
    assert not template_reads_secrets(env, {**raw, "c": "fine"}, "t.j2")


def test_a_broken_value_or_template_counts_for_nothing_else() -> None:
    env = _env({"t.j2": "{{ v }}", "bad.j2": "{% if %}{{ secrets.x }}"})
    assert not template_reads_secrets(env, {"v": "{{ oops("}, "t.j2")
    assert not template_reads_secrets(env, {}, "bad.j2")


def test_a_value_with_an_unknown_filter_is_no_traceback() -> None:
    # find_undeclared_variables compiles: an unknown filter raised out of the scan
    # (a branch not taken is scanned but never rendered, so nothing else reports it).
    env = _env({"t.j2": "{% if false %}{{ v }}{% endif %}ok"})
    assert not template_reads_secrets(env, {"v": "{{ secrets.pw | nosuch }}"}, "t.j2")
    both = _env({"t.j2": "{% if false %}{{ v }}{% endif %}{{ w }}"})
    assert template_reads_secrets(both, {"v": "{{ x | nosuch }}", "w": "{{ secrets.pw }}"},
                                  "t.j2")
