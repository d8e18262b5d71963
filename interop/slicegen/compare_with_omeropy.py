#!/usr/bin/env python3
"""Check that our Slice files describe the same wire types as the references.

Our files are compiled with ZeroC's slice2py (Ice 3.7) into a temporary
directory, and every definition is compared with:
  * omero-py's generated Python (OMERO's slice2py 3.6 output) for omero::*;
  * ZeroC's own generated Python of the Ice 3.7 runtime package (Debian's
    python3-zeroc-ice, /usr/lib/python3/dist-packages/{Ice,Glacier2}) for
    Ice::* and Glacier2::*, when it is installed.

Compared: kind, type id, compact id, base class, base interfaces, data
members (name, type, order, optional flag and tag), preserve-slice,
python metadata, sequence/dictionary element types, enumerators, constant
values, and for interfaces every operation: wire name, mode and send mode
(idempotent / nonmutating), amd, format, in/out/return types with optional
tags, and exceptions.

Known differences between slice2py 3.6 and 3.7 output that the reader
normalises (so they are not reported): 3.6 defines interfaces with
defineClass, 3.7 with defineValue(..., isInterface=True) plus a servant
defineClass; 3.6 names the class-by-value type IcePy._t_Object, 3.7
IcePy._t_Value; 3.7 lists an interface's bases on the servant class only.

Deliberately not compared (wire-irrelevant, reported as a count only):
operations of classes (we leave them out: only data members are encoded),
parameter names, default values and documentation.

Usage:
    python3 compare_with_omeropy.py [--slice-dir slice] [--omeropy DIR]
                                    [--ice-python DIR] [--slice2py PATH]
Exit status 0 when no difference is found.
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import icepy_reader  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def compile_ours(slice_dir, slice2py, out_root):
    """Compile each .ice file into its own folder (base names collide)."""
    outputs = []
    files = sorted(glob.glob(os.path.join(slice_dir, "**", "*.ice"), recursive=True))
    files = [f for f in files if "/slice2rs/" not in f]
    for ice in files:
        rel = os.path.relpath(ice, slice_dir)
        out = os.path.join(out_root, os.path.dirname(rel))
        os.makedirs(out, exist_ok=True)
        res = subprocess.run([slice2py, "-I" + slice_dir, "--output-dir", out, ice],
                             capture_output=True, text=True)
        if res.returncode != 0 or res.stderr.strip():
            print("slice2py on %s:\n%s" % (rel, res.stderr.strip()), file=sys.stderr)
            if res.returncode != 0:
                raise SystemExit(2)
        base = os.path.splitext(os.path.basename(ice))[0]
        outputs.append((rel, os.path.join(out, base + "_ice.py")))
    return outputs


def index(def_lists):
    """id -> definition (forward declarations dropped)."""
    out = {}
    for defs in def_lists:
        for d in defs:
            if d["kind"] != "fwd":
                out.setdefault(d["id"], d)
    return out


def bases_of(d):
    if d.get("ice36"):
        return list(d.get("interfaces") or [])
    extra = [b for b in d.get("disp_bases", []) if b != d.get("base")]
    return list(d.get("interfaces") or []) + [b for b in extra if b not in (d.get("interfaces") or [])]


def members(d):
    return [(m["name"], m["type"], m["optional"], m["tag"] if m["optional"] else 0, m["meta"])
            for m in d.get("members", ())]


def param(p):
    if p is None:
        return None
    return (p["type"], p["optional"], p["tag"] if p["optional"] else 0, p["meta"])


def op_sig(op):
    return {
        "mode": op.mode,
        "sendMode": op.send_mode,
        "amd": op.amd,
        "format": op.format,
        "meta": op.meta,
        "in": [param(p) for p in op.in_params],
        "out": [param(p) for p in op.out_params],
        "return": param(op.ret),
        "throws": list(op.exceptions),
    }


def const_value(v):
    if isinstance(v, icepy_reader.EnumBase):
        return ("enumerator", v.name)
    return (type(v).__name__, v)


def compare_def(ref, ours):
    diffs = []

    def check(what, a, b):
        if a != b:
            diffs.append("%s: reference %r, ours %r" % (what, a, b))

    check("kind", ref["kind"], ours["kind"])
    if ref["kind"] != ours["kind"]:
        return diffs, 0
    kind = ref["kind"]
    ignored = 0
    if kind in ("class", "exception", "struct"):
        check("members", members(ref), members(ours))
        check("metadata", ref.get("meta"), ours.get("meta"))
    if kind in ("class", "exception"):
        check("base", ref.get("base"), ours.get("base"))
        check("preserve-slice", ref.get("preserve"), ours.get("preserve"))
    if kind == "class":
        check("compact id", ref["compact"], ours["compact"])
        check("implements", bases_of(ref), bases_of(ours))
        ignored = len(ref.get("ops", ()))
    if kind == "interface":
        check("bases", sorted(bases_of(ref)), sorted(bases_of(ours)))
        check("metadata", ref.get("meta"), ours.get("meta"))
        rops = {op.name: op for op in ref.get("ops", ())}
        oops = {op.name: op for op in ours.get("ops", ())}
        check("operation names (in order)", [o.name for o in ref.get("ops", ())],
              [o.name for o in ours.get("ops", ())])
        for name in rops:
            if name in oops:
                a, b = op_sig(rops[name]), op_sig(oops[name])
                for key in a:
                    check("operation %s %s" % (name, key), a[key], b[key])
    if kind == "sequence":
        check("element", ref["elem"], ours["elem"])
        check("metadata", ref["meta"], ours["meta"])
    if kind == "dictionary":
        check("key/value", (ref["key"], ref["value"]), (ours["key"], ours["value"]))
        check("metadata", ref["meta"], ours["meta"])
    if kind == "enum":
        check("enumerators", ref["enumerators"], ours["enumerators"])
    if kind == "const":
        check("value", const_value(ref["value"]), const_value(ours["value"]))
    return diffs, ignored


def read_all(paths):
    lists = []
    for p in paths:
        lists.append(icepy_reader.read_file(p))
    return lists


def main(argv=None):
    ap = argparse.ArgumentParser(description="Compare our Slice with omero-py / Ice 3.7.")
    ap.add_argument("--slice-dir", default=os.path.join(REPO, "slice"))
    ap.add_argument("--omeropy", required=True,
                    help="folder holding omero-py's omero_*_ice.py")
    ap.add_argument("--ice-python", default="/usr/lib/python3/dist-packages",
                    help="folder holding ZeroC's Ice/ and Glacier2/ Python packages (3.7)")
    ap.add_argument("--slice2py", default="slice2py")
    args = ap.parse_args(argv)

    omero_files = sorted(glob.glob(os.path.join(args.omeropy, "omero_*_ice.py")))
    if not omero_files:
        raise SystemExit("no omero_*_ice.py under %s (see README.md)" % args.omeropy)
    ice_files = []
    for pkg in ("Ice", "Glacier2"):
        ice_files += sorted(glob.glob(os.path.join(args.ice_python, pkg, "*_ice.py")))

    ref_omero = read_all(omero_files)
    icepy_reader.classify_36(ref_omero)
    ref_ice = read_all(ice_files)
    reference = index(ref_omero + ref_ice)

    with tempfile.TemporaryDirectory() as tmp:
        compiled = compile_ours(args.slice_dir, args.slice2py, tmp)
        our_lists = read_all([py for _, py in compiled])
    ours = index(our_lists)

    total_diffs, ignored_ops, compared = 0, 0, 0
    for type_id in sorted(ours):
        ref = reference.get(type_id)
        if ref is None:
            print("EXTRA %s: defined by us, absent from the references" % type_id)
            total_diffs += 1
            continue
        diffs, ignored = compare_def(ref, ours[type_id])
        compared += 1
        ignored_ops += ignored
        for line in diffs:
            print("DIFF %s %s" % (type_id, line))
        total_diffs += len(diffs)

    missing_omero = sorted(t for t in index(ref_omero) if t not in ours)
    for type_id in missing_omero:
        print("MISSING %s: defined by omero-py, not by us" % type_id)
    total_diffs += len(missing_omero)
    not_needed = sorted(t for t in index(ref_ice) if t not in ours)

    kinds = {}
    for d in ours.values():
        kinds[d["kind"]] = kinds.get(d["kind"], 0) + 1
    print("compared %d definitions from %d Slice files (%s)" % (
        compared, len(compiled), ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items()))))
    print("reference: %d omero-py files, %d ZeroC Ice/Glacier2 files" % (
        len(omero_files), len(ice_files)))
    print("ignored on purpose: %d class operations (not part of class encoding)" % ignored_ops)
    print("Ice/Glacier2 types of the Ice runtime we do not define (not needed): %d" % len(not_needed))
    print("differences: %d" % total_diffs)
    return 0 if total_diffs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
