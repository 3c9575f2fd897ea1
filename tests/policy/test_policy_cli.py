"""`scalegate policy list|check|explain|diff`, via Typer and (for errors) the real entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scalegate.cli import app
from scalegate.errors import PolicyError, join_hint
from scalegate.policy import bundled_policies, bundled_text, load_policy
from scalegate.units import counted

runner = CliRunner()
ENV = {"COLUMNS": "120", "NO_COLOR": "1", "TERM": "dumb"}


def run(*args: str) -> str:
    result = runner.invoke(app, ["policy", *args], env=ENV)
    assert result.exit_code == 0, result.output
    return result.output


def test_list_shows_every_bundled_policy_with_its_digest() -> None:
    out = run("list")
    for name in bundled_policies():
        assert name in out
        assert load_policy(name).digest()[:12] in out


@pytest.mark.parametrize("name", sorted(bundled_policies()))
def test_explain_fits_one_screen(name: str) -> None:
    out = run("explain", name)
    p = load_policy(name)
    assert p.digest() in out and "resumption" in out
    for t in p.compute.thresholds:
        assert t.id in out
    for cap in p.capabilities:
        for level in cap.levels:
            assert level.id in out
    for s in p.safeguards:
        assert s.id in out
    assert len(out.splitlines()) <= 60, f"{name}: {len(out.splitlines())} lines"


def test_explain_shows_cadence_quorum_and_illustrative_marks() -> None:
    out = run("explain", "demo")
    assert "every 2x effective compute" in out and "when missing: pause" in out
    ((trig,),) = [level.evaluations for cap in load_policy("demo").capabilities
                  for level in cap.levels]
    assert "every 1.5x" in out and f"{trig.alert:g}*" in out and f"{trig.trigger:g}*" in out
    assert "approvals by rso and board" in out
    assert "policy changes: approved (published) by one of rso, board" in out
    assert "security-level-demo" in out and "ciso" in out


def test_check_accepts_a_good_file(tmp_path: Path) -> None:
    path = tmp_path / "demo.yaml"
    path.write_text(bundled_text("demo"), encoding="utf-8")
    out = run("check", str(path))
    assert out.startswith("ok") and load_policy("demo").digest() in out


def test_policy_text_is_shown_literally_not_as_markup(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    text = bundled_text("demo").replace("title: scalegate demo policy", 'title: "Lab [bold]policy"')
    path.write_text(
        text.replace("recipient: demo regulator", 'recipient: "[internal] desk"'), encoding="utf-8"
    )
    out = run("explain", str(path))
    assert "Lab [bold]policy" in out and "[internal] desk" in out


def test_a_pause_statement_template_names_only_known_fields(tmp_path: Path) -> None:
    from scalegate.errors import PolicyError
    from scalegate.policy import parse_policy

    demo = bundled_text("demo")
    assert "{reasons}" in demo
    for bad, said in (("{reasonz}", "unknown field {reasonz}; a statement may name {run_id}"),
                      ("{run_id", "not a valid template"),
                      ("{reasons:.2e}", "has a format spec or conversion"),
                      ("{reasons!r}", "has a format spec or conversion")):
        with pytest.raises(PolicyError) as info:
            parse_policy(demo.replace("{reasons}", bad), source="demo-bad.yaml")
        problems = " ".join(what for _, what in info.value.problems)
        assert said in problems, problems


def test_check_lists_every_error_and_exits_1(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(bundled_text("demo"), encoding="utf-8")
    bad = tmp_path / "bad.yaml"
    demo = bundled_text("demo")
    # The demo's one compute threshold, wherever it sits and whatever its number.
    (flop_line,) = [ln for ln in demo.splitlines() if ln.strip().startswith("flop: ")]
    lines = demo.splitlines()
    item = next(i for i in range(lines.index(flop_line), -1, -1) if "- id: " in lines[i])
    where = f"{item + 1}:{lines[item].index('id:') + 1}"
    text = demo.replace(flop_line, flop_line.replace("flop:", "flops:")).replace(
        "every: 2x", "every: 1x"
    )
    bad.write_text(text.replace("max_age: 30d", "max_age: 30 days"), encoding="utf-8")
    scalegate = Path(sys.executable).parent / "scalegate"
    proc = subprocess.run(
        [str(scalegate), "policy", "check", str(good), str(bad)],
        capture_output=True,
        text=True,
        env={**ENV, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 1
    assert "ok" in proc.stdout and "good.yaml" in proc.stdout
    assert "Traceback" not in proc.stderr
    err = " ".join(proc.stderr.split())
    assert "bad.yaml: the policy is invalid (4 problems). Fix each problem listed" in err
    assert f"bad.yaml:{where}: compute.thresholds[0].flop: missing required key 'flop'" in err
    assert "unknown key 'flops' (did you mean 'flop'?)" in err
    assert "evaluation.every: expected a multiplier greater than 1x" in err
    assert "safeguards[0].max_age: expected a duration such as 24h" in err


def test_unknown_policy_name_is_a_message_not_a_traceback() -> None:
    scalegate = Path(sys.executable).parent / "scalegate"
    proc = subprocess.run(
        [str(scalegate), "policy", "explain", "rsp-9"],
        capture_output=True,
        text=True,
        env={**ENV, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "no bundled policy named 'rsp-9'" in proc.stderr and "anthropic-rsp-2.2" in proc.stderr
    assert "and no such file. Bundled policies: " in " ".join(proc.stderr.split())


def test_a_missing_policy_file_is_one_punctuated_paragraph(tmp_path: Path) -> None:
    scalegate = Path(sys.executable).parent / "scalegate"
    proc = subprocess.run(
        [str(scalegate), "policy", "check", "nosuch.yaml"],
        capture_output=True, text=True, cwd=tmp_path,
        env={**ENV, "PATH": "/usr/bin:/bin"}, timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    err = " ".join(proc.stderr.split())
    assert err == ("error: no policy file 'nosuch.yaml'. Give a path to a YAML file or a "
                   "bundled name (`scalegate policy list`).")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("message", "hint", "shown"),
    [
        ("no such file", "Do this.", "no such file. Do this."),
        ("no policy file 'x.yaml'", "Do this.", "no policy file 'x.yaml'. Do this."),
        ("invalid (6 problems)", "Fix each.", "invalid (6 problems). Fix each."),
        ("already a sentence.", "Do this.", "already a sentence. Do this."),
        ("a question?", "Do this.", "a question? Do this."),
        ("quoted 'end.'", "Do this.", "quoted 'end.' Do this."),
        ("left open:", "Do this.", "left open. Do this."),
        ("trailing space. ", " Do this.", "trailing space. Do this."),
        ("several lines:\n  a: b\n", "Fix each.", "several lines:\n  a: b\nFix each."),
        ("no hint", None, "no hint"),
    ],
)
def test_message_and_hint_join_as_one_paragraph(message: str, hint: str | None,
                                                shown: str) -> None:
    """How `print_error` (via str()) joins an error's message and hint: a full stop between
    them unless the message ends a sentence, never two, never a line starting with a space."""
    assert str(PolicyError(message, hint=hint)) == shown
    assert join_hint(message, hint) == shown
    assert ".." not in shown and "\n " not in shown.replace("\n  a", "")


def test_counts_are_singular_for_one() -> None:
    assert [counted(n, "runs") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]
    assert counted(1, "entries") == "1 entry" and counted(1, "witnesses") == "1 witness"
    assert counted(1, "keys registered") == "1 key registered"
    assert counted(1, "gate consultations") == "1 gate consultation"


def test_diff_lists_changed_values_and_whole_items(tmp_path: Path) -> None:
    out = run("diff", "anthropic-rsp-2.2", "gdm-fsf-1")
    assert "evaluation.every" in out and "capabilities[cbrn]" in out and "(absent)" in out
    assert "differences" in out
    changed = tmp_path / "demo-3x.yaml"
    changed.write_text(bundled_text("demo").replace("every: 2x", "every: 3x"), encoding="utf-8")
    out = run("diff", "demo", str(changed))
    assert "evaluation.every" in out and "1 difference " in out
    assert "identical policies" in run("diff", "demo", "demo")
    # An empty list against items elsewhere: only the items' rows, no "[] vs (absent)".
    out = run("diff", "openai-pf-2", "fli-pause-2023")
    assert "compute.thresholds[gpt4-proxy]" in out and "[]" not in out


def test_common_mistakes_are_said_plainly() -> None:
    from scalegate.errors import PolicyError
    from scalegate.policy import parse_policy

    demo = bundled_text("demo")
    for old, new, said in (("trigger: 0.6", "trigger: high", "expected a number (e.g. 1e25"),
                           ("on_missing: pause", "on_missing: stop",
                            "expected one of 'pause', 'evaluate' or 'alert' (got 'stop')")):
        assert old in demo
        with pytest.raises(PolicyError) as info:
            parse_policy(demo.replace(old, new), source="demo-bad.yaml")
        problems = " ".join(what for _, what in info.value.problems)
        assert said in problems and "Input should" not in problems, problems


def test_check_reports_schema_and_reference_problems_in_one_run(tmp_path: Path) -> None:
    """An undefined role is reported in the same run as a schema problem elsewhere, not
    only once that one is fixed."""
    demo = bundled_text("demo")
    assert "attested_by: [ciso]" in demo and "every: 2x" in demo
    bad = tmp_path / "bad.yaml"
    bad.write_text(demo.replace("attested_by: [ciso]", "attested_by: [cisco]")
                   .replace("every: 2x", "every: 1x"), encoding="utf-8")
    scalegate = Path(sys.executable).parent / "scalegate"
    proc = subprocess.run([str(scalegate), "policy", "check", str(bad)], capture_output=True,
                          text=True, env={**ENV, "PATH": "/usr/bin:/bin"}, timeout=60)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    err = " ".join(proc.stderr.split())
    assert "the policy is invalid (2 problems)" in err
    lines = demo.splitlines()
    (every,) = [n + 1 for n, ln in enumerate(lines) if ln.strip() == "every: 2x"]
    (role,) = [n + 1 for n, ln in enumerate(lines) if "attested_by: [ciso]" in ln]
    assert f"bad.yaml:{every}:10: evaluation.every: expected a multiplier greater than 1x" in err
    assert (f"bad.yaml:{role}:19: safeguards[0].attested_by[0]: role 'cisco' is not in "
            "governance.roles") in err


def test_explain_says_what_reaching_each_level_means(tmp_path: Path) -> None:
    text = bundled_text("demo").replace("        requires: [security-level-demo]\n",
                                        "        on_reach: pause\n")
    path = tmp_path / "stop.yaml"
    path.write_text(text, encoding="utf-8")
    assert "pause, whatever is attested" in " ".join(run("explain", str(path)).split())
    path.write_text(text.replace("on_reach: pause", "on_reach: continue"), encoding="utf-8")
    assert "record only" in run("explain", str(path))


def test_piped_listings_are_whole_lines_and_there_is_json() -> None:
    """`scalegate policy list | cat` shows whole names, with no terminal width to cut them."""
    scalegate = Path(sys.executable).parent / "scalegate"
    env = {"PATH": "/usr/bin:/bin", "TERM": "xterm-256color"}  # no COLUMNS: a plain pipe
    proc = subprocess.run([str(scalegate), "policy", "list"], capture_output=True, text=True,
                          env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.strip()}
    for name in bundled_policies():
        assert name in lines and load_policy(name).title in lines[name]
    assert "\x1b[" not in proc.stdout  # plain: no colour codes into a pipe
    data = json.loads(run("list", "--json"))
    assert {d["name"] for d in data} == set(bundled_policies())
    assert all(d["digest"] == load_policy(d["name"]).digest() for d in data)


def test_diff_shows_what_each_side_defines_in_values() -> None:
    """eu-ai-act vs ca-sb53: the thresholds each defines show their FLOP, not "(defined)"."""
    out = " ".join(run("diff", "eu-ai-act", "ca-sb53").split())
    assert "(defined)" not in out
    assert "flop: 1e25" in out and "flop: 1e26" in out and "action: notify" in out
