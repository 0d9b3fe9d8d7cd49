"""Every error a user can reach from the command lines is one line on stderr with exit status 2 (issue 12):
each case runs the command in a subprocess and checks that no traceback is printed."""
import subprocess
import sys

import pytest

BAD_MODULE = "import torch\ndef build(:\n    pass\n"
RAISING_MODULE = "import torch\ndef build():\n    raise RuntimeError('my factory is broken')\n"


def _cmd(tmp_path, case):
    (tmp_path / "syntax.py").write_text(BAD_MODULE)
    (tmp_path / "raises.py").write_text(RAISING_MODULE)
    (tmp_path / "bad.yaml").write_text("name: x\nnum_pes: 0\n")
    (tmp_path / "notes.sqlite").write_text("not a database\n" * 50)
    t = str(tmp_path)
    return {
        "run: arch": ["run.py", "--arch", "4/8/x/1"],
        "run: seq on a layer": ["run.py", "--workload", "gemm:32x32x32", "--seq", "8"],
        "run: kernel larger than input": ["run.py", "--workload", "conv:1x3x4x4,8x7x7"],
        "run: accumulator overflow": ["run.py", "--workload", "gemm:64x64x64", "--arch", "16/16/16/16"],
        "run: module syntax error": ["run.py", "--workload", f"module:{t}/syntax.py:build"],
        "run: module factory raises": ["run.py", "--workload", f"module:{t}/raises.py:build"],
        "run: missing checkpoint": ["run.py", "--workload", "minilm", "--checkpoint", f"{t}/nope"],
        "run: bad hardware file": ["run.py", "--hw", f"{t}/bad.yaml"],
        "run: plot into a directory": ["run.py", "--workload", "gemm:32x32x32", "--plot", t],
        "run: json into a missing directory": ["run.py", "--workload", "gemm:32x32x32", "--json", f"{t}/a/b.json"],
        "sweep: unknown workload": ["-m", "studies.sweep", "--workload", "nope", "--archs", "8/8/-/-",
                                    "--store", f"{t}/s.sqlite", "--scheduler", "serial"],
        "sweep: V mismatch": ["-m", "studies.sweep", "--workload", "gemm:32x32x32", "--hw", "simba",
                              "--archs", "8/8/-/-,V=16", "--store", f"{t}/s.sqlite"],
        "sweep: empty archs": ["-m", "studies.sweep", "--workload", "gemm:32x32x32", "--archs", " , ",
                               "--store", f"{t}/s.sqlite"],
        "sweep: damaged store": ["-m", "studies.sweep", "--workload", "gemm:32x32x32", "--archs", "8/8/-/-",
                                 "--store", f"{t}/notes.sqlite", "--scheduler", "serial"],
        "sweep: unknown hardware": ["-m", "studies.sweep", "--workload", "gemm:32x32x32", "--hw", "nope"],
        "sweep: csv into a directory": ["-m", "studies.sweep", "--workload", "gemm:32x32x32", "--archs", "8/8/-/-",
                                        "--csv", t, "--store", f"{t}/s.sqlite"],
        "ptq: damaged store": ["-m", "studies.ptq", "--workload", "digits-cnn", "--table", "findings",
                               "--store", f"{t}/notes.sqlite"],
        "paper: unknown hardware": ["-m", "studies.paper", "--hw", "nope"],
        "paper: unknown technology": ["-m", "studies.paper", "--tech", "3x"],
    }[case]


CASES = ["run: arch", "run: seq on a layer", "run: kernel larger than input", "run: accumulator overflow",
         "run: module syntax error", "run: module factory raises", "run: missing checkpoint", "run: bad hardware file",
         "run: plot into a directory", "run: json into a missing directory", "sweep: unknown workload",
         "sweep: V mismatch", "sweep: empty archs", "sweep: damaged store", "sweep: unknown hardware",
         "sweep: csv into a directory", "ptq: damaged store", "paper: unknown hardware", "paper: unknown technology"]


@pytest.mark.parametrize("case", CASES)
def test_user_errors_are_one_line_with_status_2(tmp_path, case):
    p = subprocess.run([sys.executable, *_cmd(tmp_path, case)], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith(("vsqsim: ", "sweep: "))]
    assert p.returncode == 2, (case, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, (case, p.stderr[-2000:])
    assert len(lines) == 1, (case, lines)
    assert "error" in lines[0]
