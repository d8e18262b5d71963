"""ZeroC's own Slice compilers accept every file under slice/ (Ice, Glacier2, omero).

slice2rs is ours; these say the same files are valid Slice to the reference implementation.
slice2js writes every file of one run into one directory, so it runs once per directory (the
files' base names repeat across directories: Session.ice, Router.ice, API.ice).
"""
import pytest

from conftest import SLICE, SLICE_DIRS, run, slice_files, tool


def compile_all(compiler, out, *flags):
    files = slice_files()
    assert len(files) > 200, f"only {len(files)} Slice files found under {SLICE}"
    res = run([tool(compiler), *flags, "-I", SLICE, "--output-dir", out, *files])
    return res


@pytest.mark.parametrize("compiler,flags,suffix", [
    ("slice2java", ["--compat"], ".java"),
    ("slice2java", [], ".java"),
    ("slice2py", [], ".py"),
])
def test_compiler_accepts_every_file(tmp_path, compiler, flags, suffix):
    res = compile_all(compiler, tmp_path, *flags)
    assert res.stderr.strip() == "", res.stderr
    assert any(tmp_path.rglob("*" + suffix))


def test_slice2js_accepts_every_file(tmp_path):
    for top in SLICE_DIRS:
        for d in [SLICE / top, *(p for p in (SLICE / top).rglob("*") if p.is_dir())]:
            files = sorted(d.glob("*.ice"))
            if not files:
                continue
            out = tmp_path / d.relative_to(SLICE)
            out.mkdir(parents=True, exist_ok=True)
            res = run([tool("slice2js"), "-I", SLICE, "--output-dir", out, *files])
            assert res.stderr.strip() == "", res.stderr
            assert len(list(out.glob("*.js"))) == len(files), d
