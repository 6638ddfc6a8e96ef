"""The never-shrug summary: salient lines, exit codes and where to look next, as data
(deployer.diagnose.summary.summarize), for output no catalogue entry recognises."""

from __future__ import annotations

import pytest

from deployer.diagnose.summary import exit_meaning, summarize

TRACEBACK = """\
[2024-01-10 12:00:01 +0000] [7] [INFO] Booting worker with pid: 7
Traceback (most recent call last):
  File "/usr/local/lib/python3.12/site-packages/gunicorn/arbiter.py", line 609, in spawn_worker
    worker.init_process()
  File "/app/shop/main.py", line 9, in <module>
    from shop.payments import gateway
  File "/app/shop/payments.py", line 4, in <module>
    gateway = Gateway(os.environ.get("GW_URL"))
  File "/usr/local/lib/python3.12/site-packages/gw/client.py", line 88, in __init__
    raise ValueError("GW_URL must be an absolute URL")
ValueError: GW_URL must be an absolute URL
[2024-01-10 12:00:01 +0000] [7] [INFO] Worker exiting (pid: 7)
"""


def test_last_exception_with_innermost_and_app_frames() -> None:
    s = summarize(TRACEBACK)
    assert s.exception == "ValueError: GW_URL must be an absolute URL"
    assert str(s.origin) == "/usr/local/lib/python3.12/site-packages/gw/client.py:88 in __init__"
    assert str(s.app_origin) == "/app/shop/payments.py:4 in <module>"
    lines = s.lines()
    assert lines[0] == "last exception: ValueError: GW_URL must be an absolute URL"
    assert any("look next: the code at /app/shop/payments.py:4" in x for x in lines)


def test_only_the_last_traceback_counts() -> None:
    first = ('Traceback (most recent call last):\n  File "/app/a.py", line 1, in x\n'
             "KeyError: 'a'\n")
    s = summarize(first + TRACEBACK)
    assert s.exception.startswith("ValueError")


def test_app_frame_is_omitted_when_it_is_the_origin() -> None:
    s = summarize('Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\n'
                  'ZeroDivisionError: division by zero\n')
    assert str(s.origin) == "/app/x.py:3 in f" and s.app_origin is None


def test_exception_without_its_traceback_head_is_still_named() -> None:
    s = summarize("...\nsqlalchemy.exc.ArgumentError: Mapper could not assemble a primary key\n")
    assert s.exception == "sqlalchemy.exc.ArgumentError: Mapper could not assemble a primary key"


@pytest.mark.parametrize(("code", "words"), [
    (126, "not executable"), (127, "command not found"), (137, "out-of-memory"),
    (139, "segmentation fault"), (143, "SIGTERM"), (130, "SIGINT"), (124, "timed out"),
    (-9, "out-of-memory"), (158, "signal 30"),
])
def test_exit_codes_are_interpreted(code: int, words: str) -> None:
    assert words in exit_meaning(code)
    assert f"exit code {code}: " in "\n".join(summarize("", exit_code=code).lines())


def test_unremarkable_exit_codes_say_nothing() -> None:
    assert exit_meaning(0) == "" and exit_meaning(None) == "" and exit_meaning(7) == ""


def test_failed_build_command_and_its_exit_code() -> None:
    text = ("#12 [api 5/6] RUN ./build.sh\n"
            "#12 0.231 ./build.sh: line 3: yarn: command not found\n"
            '#12 ERROR: process "/bin/sh -c ./build.sh" did not complete successfully: '
            "exit code: 127\n")
    s = summarize(text)
    assert s.failed_command == "/bin/sh -c ./build.sh (exit 127)"
    assert s.exit_code == 127 and "command not found" in s.exit_meaning
    assert s.errors == ["#12 0.231 ./build.sh: line 3: yarn: command not found"]
    assert any("first error there" in h for h in s.look_next)


def test_classic_builder_and_compose_wrappers() -> None:
    assert summarize("The command '/bin/sh -c make assets' returned a non-zero code: 2"
                     ).failed_command == "/bin/sh -c make assets (exit 2)"
    assert summarize('service "migrate" didn\'t complete successfully: exit 1'
                     ).failed_command == "service migrate (exit 1)"


def test_step_command_is_the_fallback() -> None:
    assert summarize("nope", command="./deploy.sh --fast").failed_command == "./deploy.sh --fast"


def test_error_lines_skip_benign_words_and_keep_the_last_ones() -> None:
    text = "\n".join([
        "INFO running, 0 errors so far",
        "WARNING: error_log is /var/log/app/error.log",
        "psql:<stdin>:3: ERROR:  relation \"frob\" violates the frob rule",
        "FATAL:  frobnication not permitted",
        "error: could not frobnicate the widget",
        "E: frob repository is broken",
        '{"level":"error","msg":"frob upstream answered gibberish"}',
        "2024/01/01 [error] 7#7: *1 frob upstream answered gibberish",
        "ERROR: frob 7",
    ])
    s = summarize(text)
    assert all("0 errors" not in e and "error_log" not in e for e in s.errors)
    assert len(s.errors) == 5 and s.errors[-1] == "ERROR: frob 7"
    assert "FATAL:  frobnication not permitted" not in s.errors  # older than the last five


def test_prefixes_of_run_logs_and_compose_are_removed() -> None:
    s = summarize("18:02:11 vps migrate!| api-1  | FATAL: frob lost\n")
    assert s.errors == ["FATAL: frob lost"]


def test_where_to_look_next_depends_on_what_failed() -> None:
    assert any("dmesg" in h for h in summarize("Killed", exit_code=137).look_next)
    assert any("docker compose ps -a" in h
               for h in summarize("x", kind="compose").look_next)
    assert summarize("x", log_path="run.log").look_next[-1] == \
        "the whole log: deployer explain run.log"
    assert summarize("x").look_next  # always somewhere to look


def test_it_never_claims_a_cause() -> None:
    text = "\n".join(summarize(TRACEBACK, exit_code=1, log_path="r.log").lines())
    assert "cause" not in text.lower()


def test_empty_summary_is_empty() -> None:
    assert summarize("all fine\n").empty
    assert not summarize("all fine\n", exit_code=137).empty


def test_an_exited_container_in_the_collected_stack_state_is_the_failed_command() -> None:
    # `compose ps -a` as collected after a failed wait (v2 row, then v1 row): the
    # container's own exit status means more than the wait's 1
    v2 = ("NAME      IMAGE     COMMAND                  SERVICE   CREATED         STATUS"
          "                       PORTS\n"
          "x-api-1   abc123    \"/bin/sh -c 'echo …'\"    api       3 seconds ago   "
          "Exited (137) 2 seconds ago\n")
    s = summarize(v2, exit_code=1, kind="wait")
    assert s.failed_command.startswith("container x-api-1 exited (exit 137: killed with "
                                       "SIGKILL")
    assert any("dmesg" in hint for hint in s.look_next)
    v1 = ("   Name              Command          State    Ports\n"
          "x_api_1   /bin/sh -c echo boom; exit 4   Exit 4\n")
    assert summarize(v1, exit_code=1, kind="wait").failed_command == \
        "container x_api_1 exited (exit 4)"
    # a running container's row names no failed command
    up = "x-api-1   abc123   \"uvicorn\"   api   3 seconds ago   Up 2 seconds (healthy)\n"
    assert summarize(up, exit_code=1, kind="wait").failed_command == ""
