"""Templating: strict undefined errors naming file/step/field/variable, lazy vars,
captured placeholders, when, quote, templates, and variable precedence."""

from __future__ import annotations

import pytest

from deployer.errors import InputError, UsageError
from deployer.inventory import load_inventory
from deployer.models import Host
from deployer.runbook import load_runbook
from deployer.templating import _simple_parts, make_context, merge_vars, parse_cli_var
from tests.projecttools import make_project

RB = """\
vars: {app_dir: /srv/app, url: "http://{{ host.address }}{{ path }}", path: /health,
       a: "{{ b }}", b: "{{ a }}"}
secrets: [db_password]
steps:
  - {id: first, run: "echo {{ app_dir }}", capture: rev}
  - {id: second, run: "echo {{ rev }}", when: "rev != ''"}
"""


def ctx_for(tmp_path, step_index=0, planning=True, captured=None, variables=None,
            templates=None):
    make_project(tmp_path, {"rb.yml": RB}, templates=templates)
    rb = load_runbook("rb", str(tmp_path))
    host = Host("vps", "127.0.0.1", user="deploy", groups=["web"])
    merged = merge_vars(rb, host, [], []) if variables is None else variables
    return make_context(rb, host, merged, {"db_password": "s3cret!"}, captured or {},
                        rb.steps[step_index], planning=planning, project_dir=str(tmp_path))


def test_render_vars_host_secrets_and_lazy_nested_vars(tmp_path):
    ctx = ctx_for(tmp_path)
    assert ctx.render("{{ url }}") == "http://127.0.0.1/health"
    assert ctx.render(["{{ host.name }}", {"k": "{{ secrets.db_password }}"}]) == [
        "vps", {"k": "s3cret!"}]
    assert ctx.render("{{ runbook.name }} {{ host.groups[0] }}") == "rb web"
    assert ctx.vars["url"] == "http://127.0.0.1/health"
    assert ctx.fact("compose_command") == "docker compose"  # the fact's stand-in


def test_quote_filter():
    from deployer.templating import environment

    env = environment(".")
    assert env.from_string("rm -rf {{ d | quote }}").render(d="a b'c") == "rm -rf 'a b'\"'\"'c'"


def test_undefined_variable_names_file_step_field_and_variable(tmp_path):
    ctx = ctx_for(tmp_path)
    with pytest.raises(InputError) as info:
        ctx.render("cd {{ app_dri }}", "run.command")
    (p,) = info.value.problems
    assert str(p.position).endswith("runbooks/rb.yml:5:22")  # the run: value
    assert "step `first` run.command: undefined variable `app_dri`" in p.message
    assert "did you mean `app_dir`?" in p.hint


@pytest.mark.parametrize("text, message, hint", [
    ("{{ db.nmae }}", "undefined key `db.nmae`", "did you mean `db.name`? `db` has: name, user"),
    ("{{ db['usr'] }}", "undefined key `db.usr`", "did you mean `db.user`?"),
    ("{{ host.adress }}", "undefined key `host.adress`", "did you mean `host.address`?"),
    ("{{ secrets.db_pasword }}", "undefined secret `secrets.db_pasword`",
     "did you mean `db_password`?"),
])
def test_missing_key_names_the_mapping_it_was_looked_up_on(tmp_path, text, message, hint):
    ctx = ctx_for(tmp_path, variables={"db": {"name": "shop", "user": "app"}})
    with pytest.raises(InputError) as info:
        ctx.render(text, "run.command")
    (p,) = info.value.problems
    assert message in p.message and hint in p.hint, (p.message, p.hint)


def test_missing_key_in_a_template_file_names_its_mapping(tmp_path):
    ctx = ctx_for(tmp_path, variables={"db": {"name": "shop"}},
                  templates={"app.conf.j2": "name={{ db.name }}\nuser={{ db.user }}\n"})
    with pytest.raises(InputError) as info:
        ctx.template("app.conf.j2")
    (p,) = info.value.problems
    assert "undefined key `db.user`" in p.message and "`db` has: name" in p.hint


def test_undeclared_secret(tmp_path):
    ctx = ctx_for(tmp_path)
    with pytest.raises(InputError, match=r"undefined secret `secrets.api_key`") as info:
        ctx.render("{{ secrets.api_key }}", "run.command")
    assert "secrets: [api_key]" in info.value.problems[0].hint


def test_variable_cycle_is_reported(tmp_path):
    ctx = ctx_for(tmp_path)
    with pytest.raises(InputError, match="cycle: a -> b -> a"):
        ctx.render("{{ a }}", "run.command")


def test_captured_placeholder_at_plan_time_and_value_at_run_time(tmp_path):
    assert ctx_for(tmp_path, 1).render("{{ rev }}") == "<captured: rev>"
    assert ctx_for(tmp_path, 1).pending_in("rev != ''") == ["rev"]
    run_ctx = ctx_for(tmp_path, 1, planning=False, captured={"rev": "abc123"})
    assert run_ctx.render("{{ rev }}") == "abc123"
    assert run_ctx.eval_when("rev != ''") is True
    with pytest.raises(InputError, match="undefined variable `rev`"):
        ctx_for(tmp_path, 1, planning=False).render("{{ rev }}")


@pytest.mark.parametrize("expr, expected", [
    ("true", True), ("false", False), (True, True), ("{{ flag }}", False),
    ("flag", False), ("not flag", True), ("{{ n > 2 }}", True), ("n == 3 and not flag", True),
    ("word", False),
])
def test_eval_when(tmp_path, expr, expected):
    ctx = ctx_for(tmp_path, variables={"flag": False, "n": 3, "word": "false"})
    assert ctx.eval_when(expr) is expected


def test_invalid_when_expression(tmp_path):
    ctx = ctx_for(tmp_path, variables={})
    with pytest.raises(InputError, match="invalid `when` expression"):
        ctx.eval_when("a ==")


def test_templates_render_and_missing_template_is_an_error(tmp_path):
    ctx = ctx_for(tmp_path, templates={"app.env.j2": "DIR={{ app_dir }}\nX={{ extra }}\n"})
    assert ctx.template("app.env.j2", {"extra": 1}) == "DIR=/srv/app\nX=1\n"
    assert "templates/app.env.j2" in ctx.runbook.template_files
    with pytest.raises(InputError) as info:
        ctx.template("app.env")
    p = info.value.problems[0]
    assert "template `app.env` not found" in p.message and "app.env.j2" in p.hint
    assert str(p.position).endswith("rb.yml:5:5")


def test_read_local_missing(tmp_path):
    ctx = ctx_for(tmp_path)
    with pytest.raises(InputError, match="local file `.*nope.txt` not found"):
        ctx.read_local("nope.txt")


def test_compose_command_var(tmp_path):
    ctx = ctx_for(tmp_path, variables={"compose_command": "docker-compose"})
    assert ctx.fact("compose_command") == "docker-compose"
    assert ctx.facts_pending() == set()


@pytest.mark.parametrize("item, expected", [
    ("n=3", ("n", 3)), ("f=1.5", ("f", 1.5)), ("b=true", ("b", True)), ("s=hello", ("s", "hello")),
    ("e=", ("e", "")), ("l=[1, 2]", ("l", "[1, 2]")), ("eq=a=b", ("eq", "a=b")),
    ("d=2024-01-01", ("d", "2024-01-01")), ("z=null", ("z", None)),
    # as a bare scalar in a runbook: the text typed, not YAML 1.1's reading of it
    ("m=0644", ("m", "0644")), ("f=on", ("f", "on")), ("t=22:22", ("t", "22:22")),
    ("h=0x1F", ("h", "0x1F")), ("u=1_000", ("u", "1_000")), ("v=3.10", ("v", "3.10")),
])
def test_parse_cli_var(item, expected):
    assert parse_cli_var(item) == expected


@pytest.mark.parametrize("item", ["novalue", "1x=2", "=3"])
def test_bad_cli_var(item):
    with pytest.raises(UsageError):
        parse_cli_var(item)


def test_variable_precedence(tmp_path):
    names = ["rb", "defaults", "group", "host", "file1", "file2", "cli"]
    make_project(tmp_path, {"rb.yml": "vars: {" + ", ".join(f"{n}: rb" for n in names)
                            + "}\nsteps: [{id: a, run: ls}]\n"},
                 inventory="""\
                    defaults: {vars: {defaults: defaults, group: defaults, host: defaults,
                                      file1: defaults, file2: defaults, cli: defaults}}
                    hosts:
                      vps: {groups: [g], vars: {host: host, file1: host, file2: host, cli: host}}
                    groups:
                      g: {vars: {group: group, host: group, file1: group, file2: group,
                                 cli: group}}
                    """)
    (tmp_path / "one.yml").write_text("file1: file1\nfile2: file1\ncli: file1\n")
    (tmp_path / "two.yml").write_text("file2: file2\ncli: file2\n")
    rb = load_runbook("rb", str(tmp_path))
    (host,) = load_inventory(None, str(tmp_path)).resolve(None)
    merged = merge_vars(rb, host, [str(tmp_path / "one.yml"), str(tmp_path / "two.yml")],
                        ["cli=cli"])
    assert {n: merged[n] for n in names} == {n: n for n in names}
    assert merged.cli_keys == {"cli"}


def test_include_vars_override_inventory_but_not_cli(tmp_path):
    make_project(tmp_path, {
        "main.yml": "steps:\n  - {id: p, include: {runbook: part.yml, vars: {x: inc, y: inc,"
                    " z: '{{ base }}-inc'}}}\n",
        "part.yml": "steps:\n  - {id: s, run: 'echo {{ x }} {{ y }} {{ z }}'}\n"},
        inventory="hosts: {vps: {vars: {x: host, y: host, base: b}}}\n")
    rb = load_runbook("main", str(tmp_path))
    (host,) = load_inventory(None, str(tmp_path)).resolve(None)
    merged = merge_vars(rb, host, [], ["y=cli"])
    ctx = make_context(rb, host, merged, {}, {}, rb.steps[0], project_dir=str(tmp_path))
    assert ctx.render("{{ x }} {{ y }} {{ z }}") == "inc cli b-inc"


def test_vars_file_errors(tmp_path):
    make_project(tmp_path, {"rb.yml": "steps: [{id: a, run: ls}]\n"})
    rb = load_runbook("rb", str(tmp_path))
    bad = tmp_path / "bad.yml"
    bad.write_text("- a\n")
    with pytest.raises(InputError, match="must be a mapping"):
        merge_vars(rb, Host("h", "h"), [str(bad)], [])
    with pytest.raises(InputError, match="file not found"):
        merge_vars(rb, Host("h", "h"), [str(tmp_path / "none.yml")], [])


def test_template_uses_secrets_directly_through_vars_includes_and_extra(tmp_path):
    templates = {
        "direct.j2": "PW={{ secrets.db_password | upper }}\n",
        "via_var.j2": "URL={{ db_url }}\n",
        "via_include.j2": "{% include 'direct.j2' %}\nX=1\n",
        "via_extra.j2": "T={{ token }}\n",
        "branch.j2": "{% if false %}{{ secrets.db_password }}{% endif %}ok\n",
        "plain.j2": "DIR={{ app_dir }} URL={{ url }}\n",
    }
    variables = {"app_dir": "/srv/app", "url": "http://{{ app_dir }}",
                 "db_url": "postgresql://app:{{ pw_part }}@db/app",
                 "pw_part": "{{ secrets.db_password | urlencode }}"}
    ctx = ctx_for(tmp_path, variables=variables, templates=templates)
    for name in ("direct.j2", "via_var.j2", "via_include.j2", "branch.j2"):
        assert ctx.template_uses_secrets(name), name
    assert ctx.template_uses_secrets("via_extra.j2", {"token": "{{ secrets.db_password }}"})
    assert not ctx.template_uses_secrets("via_extra.j2", {"token": "abc"})
    assert not ctx.template_uses_secrets("plain.j2")


def test_compose_fact_pending_only_when_unpinned_and_used(tmp_path):
    ctx = ctx_for(tmp_path, variables={"app_dir": "/srv/app"})
    assert not ctx.facts_pending()
    ctx.render("echo {{ app_dir }}")
    assert not ctx.facts_pending()
    ctx.render("{{ cli | default('x') }}")  # a name other than compose_command
    assert not ctx.facts_pending()
    ctx.render("{{ compose_command | default('docker compose') }} ps")
    assert ctx.facts_pending() == {"compose_command"}
    via_var = ctx_for(tmp_path, variables={
        "cli": "{{ compose_command | default('docker compose') }} -p shop"})
    assert via_var.render("{{ cli }} up") == "docker compose -p shop up"
    assert via_var.facts_pending() == {"compose_command"}
    through_kind = ctx_for(tmp_path)
    assert through_kind.fact("compose_command") == "docker compose"
    assert through_kind.facts_pending() == {"compose_command"}
    pinned = ctx_for(tmp_path, variables={"compose_command": "docker-compose"})
    assert pinned.render("{{ compose_command }} ps") == "docker-compose ps"
    assert pinned.fact("compose_command") == "docker-compose"
    assert not pinned.facts_pending()


# -- fast path (`{{ name }}`, `{{ a.b }}` looked up directly) vs Jinja ------------------

FAST_RB = """\
vars:
  app_dir: /srv/app
  port: 8080
  ratio: 1.5
  flag: true
  nothing: null
  items_list: [1, two]
  conf: {key: v, items: shadowed, nested: {deep: 1}, n: 3}
  url: "http://{{ host.address }}:{{ port }}{{ path }}"
  path: /health
  loop_a: "{{ loop_b }}"
  loop_b: "{{ loop_a }}"
  uses_missing: "x {{ nope }}"
secrets: [db_password]
steps:
  - {id: first, run: "true", capture: rev}
  - {id: second, run: "echo {{ rev }}"}
"""

FAST_CASES = [
    "{{ app_dir }}", "{{app_dir}}", "cd {{ app_dir }} && ls", "{{ port }}", "{{ ratio }}",
    "{{ flag }}", "{{ nothing }}", "{{ items_list }}", "{{ conf }}", "{{ conf.key }}",
    "{{ conf.nested }}", "{{ conf.n }}", "{{ url }}", "{{ host.name }}", "{{ host.port }}",
    "{{ host.groups }}", "{{ runbook.name }}", "{{ secrets.db_password }}", "{{ rev }}",
    "a {{ rev }} b {{ app_dir }}\n", "{{ app_dir }}/{{ path }}", "${HOME} {{ app_dir }}",
    "x }} y {{ app_dir }}", "{{ app_dir }}}",
    "{{ app_dir }}\r\n", "{{ app_dir|upper }}", "{{ true }}",
    "{{ none }}", "{{ range }}", "{{- app_dir -}}", "{{ app_dir }} {# c #}",
]
FAST_ERRORS = [
    "{{ app_dri }}", "{{ host.nme }}", "{{ secrets.api_key }}", "{{ conf.missing }}",
    "{{ loop_a }}", "{{ uses_missing }}", "x {{ app_dir }} {{ nope }}", "{{ port.x }}",
    "{{{ app_dir }}",
]


def fast_ctx(tmp_path, planning=True):
    if not (tmp_path / "runbooks" / "rb.yml").exists():
        make_project(tmp_path, {"rb.yml": FAST_RB})
    rb = load_runbook("rb", str(tmp_path))
    host = Host("vps", "127.0.0.1", user="deploy", groups=["web"])
    return make_context(rb, host, merge_vars(rb, host, [], []), {"db_password": "s3cret!"},
                        {}, rb.steps[1], planning=planning, project_dir=str(tmp_path))


def _outcome(render, text):
    try:
        return ("ok", render(text, "run.command"))
    except InputError as exc:
        return ("error", [(p.message, str(p.position), p.hint) for p in exc.problems])


def test_fast_path_matches_jinja(tmp_path):
    ctx = fast_ctx(tmp_path)
    slow = fast_ctx(tmp_path)  # a context of its own: nothing cached by the fast one
    fast_taken = 0
    for text in FAST_CASES:
        expected = _outcome(slow._render_jinja, text)
        assert expected[0] == "ok", text
        assert _outcome(ctx._render_str, text) == expected, text
        if _simple_parts(text) is not None:
            fast_taken += 1
            assert ctx._render_simple(_simple_parts(text)) == expected[1], text
    assert fast_taken >= 20
    assert ctx.render("{{ rev }}") == "<captured: rev>"
    # Jinja reads `.items` as the dict method before the key: so must the fast path.
    assert ctx.render("{{ conf.items }}").startswith("<built-in method items")
    assert ctx.render("{{ port }}") == "8080" and ctx.render("{{ flag }}") == "True"


def test_fast_path_errors_match_jinja(tmp_path):
    ctx = fast_ctx(tmp_path)
    slow = fast_ctx(tmp_path)  # a context of its own: nothing cached by the fast one
    for text in FAST_ERRORS:
        expected = _outcome(slow._render_jinja, text)
        assert expected[0] == "error", text
        assert _outcome(ctx._render_str, text) == expected, text
    (message, position, hint), = _outcome(ctx._render_str, "{{ app_dri }}")[1]
    assert "step `second` run.command: undefined variable `app_dri`" in message
    assert position.endswith("runbooks/rb.yml:17:23") and "did you mean `app_dir`?" in hint


def test_fast_path_records_lookups_like_jinja(tmp_path):
    ctx = fast_ctx(tmp_path)
    assert not ctx.facts_pending()
    ctx.render("{{ app_dir }}")
    assert "app_dir" in ctx._names.looked_up
    assert "port" not in ctx._names.looked_up
    ctx.render("{{ port }} {{ conf.key }}")
    assert {"port", "conf"} <= ctx._names.looked_up


AS_WRITTEN_RB = """\
vars: {mode: 0644, big: 1_000, hex: 0x1F, flag: on, off_flag: no, pair: 22:22,
       ver: 3.10, port: 5432}
steps:
  - id: show
    run: "echo {{ mode }} {{ big }} {{ hex }} {{ flag }} {{ pair }} {{ ver }} {{ port + 1 }}"
    env: {MODE: 0644, FLAG: on, PAIR: 22:22, BIG: 1_000, HEX: 0x1F, VERSION: 3.10, DEBUG: True}
  - id: flagged
    run: "true"
    when: "flag and not off_flag"
  - id: unflagged
    run: "true"
    when: off_flag
"""


def test_bare_vars_and_env_values_arrive_exactly_as_written(tmp_path):
    make_project(tmp_path, {"rb.yml": AS_WRITTEN_RB})
    rb = load_runbook("rb", str(tmp_path))
    host = Host("vps", "127.0.0.1")
    merged = merge_vars(rb, host, [], ["cli_mode=0755"])
    ctx = make_context(rb, host, merged, {}, {}, rb.steps[0], project_dir=str(tmp_path))
    assert ctx.render(rb.steps[0].body.options["command"]) == (
        "echo 0644 1_000 0x1F on 22:22 3.10 5433")
    assert ctx.render("{{ cli_mode }}") == "0755"
    assert rb.steps[0].body.env == {"MODE": "0644", "FLAG": "on", "PAIR": "22:22",
                                    "BIG": "1_000", "HEX": "0x1F", "VERSION": "3.10",
                                    "DEBUG": "True"}
    # `on`/`no` still count as true/false in conditions
    assert ctx.eval_when(rb.steps[1].when) is True
    assert ctx.eval_when(rb.steps[2].when) is False
    assert ctx.render("{% if off_flag %}x{% else %}y{% endif %}") == "y"
